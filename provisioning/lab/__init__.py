"""The local lab: a real cluster (worker1, worker2, netnode) on one machine. See docs/lab.md.

- ``topology``: names, addresses and paths (pure data);
- ``cluster``: ``up``/``down``/``status`` of the hosts (namespaces, OVS, sshd);
- ``guest``: the guest image (Debian cloud kernel + busybox initramfs);
- ``console``: run a command on a guest's serial console;
- ``inventory``: the lab's Host rows and default Image.
"""
