package cluster

import "github.com/cluster-dev/cluster/bindings/go/internal/ffi"

// Error is a failure reported by the library: its status code (negative,
// as in cluster.h), the code's stable name such as "CLUSTER_E_CONFIG", and
// a message naming the problem. Tell its kind with errors.Is and the
// ErrXxx values below:
//
//	if errors.Is(err, cluster.ErrUnknownPeer) { ... }
type Error = ffi.Error

// The error kinds, one per status code of cluster.h. Every error the
// library reports is an *Error for which errors.Is(err, ErrXxx) holds for
// exactly one of them; Recv's ErrTimeout and the ErrClosed of calls after
// Close are these values themselves, so err == ErrTimeout works too.
var (
	// ErrNullArg (CLUSTER_E_NULL_ARG): a required argument was NULL.
	ErrNullArg = ffi.ErrNullArg
	// ErrInvalidArg (CLUSTER_E_INVALID_ARG): an argument was out of its
	// domain, e.g. a drop probability above 1.
	ErrInvalidArg = ffi.ErrInvalidArg
	// ErrConfig (CLUSTER_E_CONFIG): the configuration is invalid or cannot
	// be read; the message names the field.
	ErrConfig = ffi.ErrConfig
	// ErrAddrInUse (CLUSTER_E_ADDR_IN_USE): the server's address is in use.
	ErrAddrInUse = ffi.ErrAddrInUse
	// ErrIO (CLUSTER_E_IO): an operating-system I/O error.
	ErrIO = ffi.ErrIO
	// ErrUnknownPeer (CLUSTER_E_UNKNOWN_PEER): the destination is not a
	// member of the cluster.
	ErrUnknownPeer = ffi.ErrUnknownPeer
	// ErrTooLarge (CLUSTER_E_TOO_LARGE): the payload is larger than the
	// configuration's MaxMessageSize.
	ErrTooLarge = ffi.ErrTooLarge
	// ErrTimeout (CLUSTER_E_TIMEOUT): no envelope came within Recv's timeout.
	ErrTimeout = ffi.ErrTimeout
	// ErrClosed (CLUSTER_E_CLOSED): the server (or mock cluster) is closed.
	ErrClosed = ffi.ErrClosed
	// ErrFull (CLUSTER_E_FULL): a bounded queue was full; the message was
	// dropped and counted.
	ErrFull = ffi.ErrFull
	// ErrPanic (CLUSTER_E_PANIC): a bug in the library, caught at its
	// boundary.
	ErrPanic = ffi.ErrPanic
	// ErrBufferTooSmall (CLUSTER_E_BUFFER_TOO_SMALL): a buffer given to the
	// library was too small (the wrapper retries with a larger one).
	ErrBufferTooSmall = ffi.ErrBufferTooSmall
)
