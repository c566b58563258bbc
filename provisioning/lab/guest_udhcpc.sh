#!/bin/sh
# udhcpc event script of the lab guest (Debian's busybox udhcpc needs one: -s).
# Configures the address; the default route goes to the lowest-numbered NIC
# that got a router, so a guest with several leases ends up with one route.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    first_router=""
    for r in $router; do first_router=$r; break; done
    if [ -n "$first_router" ]; then
      current=$(ip route show default | sed -n 's/.* dev \(eth[0-9]*\).*/\1/p' | head -1)
      if [ -z "$current" ] || [ "${interface#eth}" -le "${current#eth}" ]; then
        ip route replace default via "$first_router" dev "$interface"
      fi
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    printf 'ip=%s\nmask=%s\nrouter=%s\ndns="%s"\n' "$ip" "${mask:-24}" "$first_router" "$dns" > "/run/sp/$interface.lease"
    ;;
esac
exit 0
