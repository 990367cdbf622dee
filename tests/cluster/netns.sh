# Sourced by raft.sh and txn.sh: three network namespaces PREFIX-n1..3 on a bridge
# that lives in a namespace of its own (PREFIX-hub; the host's firewall, br_netfilter
# and a FORWARD policy of DROP, does not see its traffic and is left alone), with
# addresses $NET.1..3/24, so that a node can be cut off with iptables inside its
# namespace. netns_setup PREFIX sets NET, ns_n1..ns_n3 and adds what it made to
# NETNS (the caller deletes those at exit); it prints why and returns 1 when it
# cannot (not root, no ip or iptables, namespaces refused).
netns_setup() {
  if [ "$(id -u)" != 0 ]; then echo "not root"; return 1; fi
  if ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
    echo "no ip or iptables"; return 1
  fi
  if ! ip netns add "$1-probe" 2>/dev/null; then echo "ip netns add fails"; return 1; fi
  ip netns del "$1-probe"
  hub=$1-hub
  NET=10.$((200 + $$ % 50)).$(($$ / 50 % 250))
  if ip netns add "$hub"; then
    NETNS="$hub ${NETNS:-}"
    ip -n "$hub" link add br0 type bridge && ip -n "$hub" link set br0 up &&
      ip -n "$hub" link set lo up || { echo "the bridge cannot be set up"; return 1; }
  else
    echo "the bridge's namespace cannot be made"; return 1
  fi
  for i in 1 2 3; do
    ns=$1-n$i
    ip netns add "$ns" || { echo "namespace $ns cannot be made"; return 1; }
    NETNS="$ns $NETNS"
    eval "ns_n$i=$ns"
    ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns" &&
      ip -n "$hub" link set "v$i" master br0 up &&
      ip -n "$ns" addr add "$NET.$i/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up ||
      { echo "the link of $ns cannot be set up"; return 1; }
  done
  ip netns exec "$1-n1" iptables -L -n >/dev/null 2>&1 || { echo "iptables fails in a namespace"; return 1; }
  return 0
}
