#!/bin/busybox sh
# /init of the Slice Portal lab guest (busybox initramfs; built by provisioning/lab/guest.py).
#
# Brings up EVERY NIC, runs DHCP on each (in parallel, with retries), reports on
# the serial console one line per result, prefixed "SP:" (docs/CONTRACTS.md):
#   SP: NIC eth1 mac=52:54:00:12:34:56
#   SP: DHCP eth1 ok ip=10.64.100.10 mask=24 router=10.64.100.1 dns=8.8.8.8 uptime=3.12
#   SP: DHCP eth0 fail uptime=33.40
#   SP: ROUTE default via 10.64.100.1 dev eth1
#   SP: PING 10.64.100.11 ok            (for each address in sp.ping=, if given)
#   SP: READY uptime=33.52
#   SP: LINK eth1 down uptime=95.10     (the host bounced the NIC's link: its VLAN changed;
#   SP: LINK eth1 up uptime=96.12        on "up" DHCP runs again and a new SP: DHCP line follows)
# and keeps a root shell on the console (the QEMU serial socket) for commands from
# the start: the SP: lines appear whenever a result is known.
#
# Kernel command line knobs (all optional):
#   sp.name=NAME        hostname
#   sp.ping=IP[,IP..]   addresses to ping once the network is up (reported as SP: PING)
#   sp.dhcp=off         skip DHCP
#   sp.dhcp_tries=10 sp.dhcp_timeout=3   udhcpc -t / -T

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /run/sp && mount -t devpts devpts /dev/pts 2>/dev/null

# The report goes to the serial console (/dev/console) and to the screen (the VGA console, seen
# through the graphical console); a write to a missing screen is ignored.
say() { echo "SP: $*"; echo "SP: $*" >/dev/tty0 2>/dev/null; return 0; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

say "BOOT userspace uptime=$(uptime_s)"
for m in $(cat /lib/modules/load-order 2>/dev/null); do
  insmod "/lib/modules/$m.ko" 2>/dev/null || say "MODULE $m fail"
done

for word in $(cat /proc/cmdline); do
  case "$word" in
    sp.*=*) key=${word%%=*}; key=${key#sp.}; val=${word#*=}; eval "SP_$key=\"\$val\"" ;;
  esac
done
hostname "${SP_name:-guest}"
ip link set lo up

# NICs in index order (eth0, eth1, ..., eth10: numeric, not lexical).
NICS=$(ls /sys/class/net | grep '^eth[0-9]*$' | sed 's/^eth//' | sort -n | sed 's/^/eth/')
for nic in $NICS; do
  say "NIC $nic mac=$(cat /sys/class/net/$nic/address)"
  ip link set "$nic" up
done

dhcp() {
  nic=$1
  if udhcpc -i "$nic" -t "${SP_dhcp_tries:-10}" -T "${SP_dhcp_timeout:-3}" -A 1 -n -q \
       -p "/run/sp/$nic.udhcpc.pid" -s /usr/share/udhcpc/default.script >/run/sp/$nic.udhcpc 2>&1; then
    . /run/sp/$nic.lease
    say "DHCP $nic ok ip=$ip mask=$mask router=${router:-none} dns=${dns:-none} uptime=$(uptime_s)"
  else
    say "DHCP $nic fail uptime=$(uptime_s)"
  fi
}

network() {
  if [ "${SP_dhcp:-on}" != off ]; then
    for nic in $NICS; do dhcp "$nic" & done
    wait
  fi
  route=$(ip route show default | head -1)
  [ -n "$route" ] && say "ROUTE $route" || say "ROUTE none"
  for target in $(echo "${SP_ping:-}" | tr , ' '); do
    if ping -c 1 -W 2 "$target" >/dev/null 2>&1 || ping -c 3 -W 2 "$target" >/dev/null 2>&1; then
      say "PING $target ok"
    else
      say "PING $target fail"
    fi
  done
  say "READY uptime=$(uptime_s)"
}

# A NIC whose carrier comes back (the host bounces it when the NIC's VLAN changes while
# the guest runs) asks DHCP again; a DHCP client still trying from before is stopped first.
watch_links() {
  for nic in $NICS; do cat "/sys/class/net/$nic/carrier" > "/run/sp/$nic.carrier" 2>/dev/null; done
  while sleep 0.3; do
    for nic in $NICS; do
      now=$(cat "/sys/class/net/$nic/carrier" 2>/dev/null)
      [ "$now" = "$(cat "/run/sp/$nic.carrier" 2>/dev/null)" ] && continue
      echo "$now" > "/run/sp/$nic.carrier"
      if [ "$now" = 1 ]; then
        say "LINK $nic up uptime=$(uptime_s)"
        pid=$(cat "/run/sp/$nic.udhcpc.pid" 2>/dev/null)
        [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = udhcpc ] && kill "$pid"
        [ "${SP_dhcp:-on}" != off ] && dhcp "$nic" &
      else
        say "LINK $nic down uptime=$(uptime_s)"
      fi
    done
  done
}

# The network comes up in the background (an interface without a VLAN takes
# ~30 s to give up on DHCP) while the console shell is there at once; the SP:
# lines appear on the console whenever a result is known.
network &
watch_links &
while true; do setsid cttyhack sh -l; sleep 0.2; done
