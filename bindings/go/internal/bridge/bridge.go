// Package bridge lets package mock serve its node handles with package
// cluster's Node without an exported constructor in package cluster.
package bridge

import "github.com/cluster-dev/cluster/bindings/go/internal/ffi"

// Start serves h as a *cluster.Node whose Peers follow the node; package
// cluster sets it when it initializes (package mock imports cluster, so it
// is set before mock uses it). It takes ownership of h.
var Start func(h *ffi.Node, inboxSize, outboxSize int) (interface{}, error)
