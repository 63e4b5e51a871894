"""Who is whose client on this host: a group whose TCP connections reach another group's
listening socket sends that group requests, so its own waits are part of their latency (a load
generator, an application calling a local cache or database).

Read from the sockets each group holds (its descriptors, already walked for `serves`) and the
TCP tables of their network namespaces, read once per profile for both (procfs.NetTables).
Unix sockets are not followed: their peers are only told by the sock_diag netlink interface.
"""

from __future__ import annotations

from schedcp.domain import procfs

Endpoint = tuple[str, tuple[str, int]]  # (network namespace, (address in hex, port))


def clients_of(groups: dict[str, procfs.HeldSockets], tables: procfs.NetTables) -> dict[str, list[str]]:
    """For each group (by id: the sockets it holds), the other groups whose listening sockets its
    established connections reach; groups that reach none are left out. `tables`: the profile's
    (procfs.sockets read the same ones)."""
    listening: dict[tuple[str, int], list[tuple[str, str]]] = {}  # (namespace, port) -> [(address, group)]
    remotes: dict[str, set[Endpoint]] = {}
    for group_id, held in groups.items():
        if not held.inodes:
            continue
        namespace = procfs.net_namespace(held.pid)
        table = tables.tcp(held.pid)
        mine = [table[inode] for inode in held.inodes if inode in table]
        for sock in mine:
            if sock.state == procfs.TCP_LISTEN:
                listening.setdefault((namespace, sock.local[1]), []).append((sock.local[0], group_id))
        remotes[group_id] = {(namespace, sock.remote) for sock in mine if sock.state == procfs.TCP_ESTABLISHED}
    found = {}
    for group_id, ends in remotes.items():
        servers = {server for namespace, (address, port) in ends
                   for bound, server in listening.get((namespace, port), ())
                   if server != group_id and _accepts(bound, address)}
        if servers:
            found[group_id] = sorted(servers)
    return found


def _accepts(bound: str, address: str) -> bool:
    """A socket bound to `bound` accepts connections to `address`: the same, or any (0.0.0.0, ::)."""
    return bound == address or not bound.strip("0")
