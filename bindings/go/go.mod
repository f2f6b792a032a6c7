module github.com/cluster-dev/cluster/bindings/go

go 1.22
