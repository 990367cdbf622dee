module avm/bench/etcdbench

// bench/raft_bench.sh builds this client in GOPATH mode (GO111MODULE=off), offline,
// against the go.etcd.io/etcd 3.4.23 sources of Debian's golang-etcd-server-dev in
// /usr/share/gocode; in that mode this file is not read, so it requires nothing.
go 1.19
