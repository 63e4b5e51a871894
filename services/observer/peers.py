"""Who is whose client on this host: a group whose connections reach another group's listening
socket sends that group requests, so its own waits are part of their latency (a load generator,
an application calling a local cache or database).

Read from the sockets each group holds (its descriptors, already walked for `serves`) and the
socket tables of their network namespaces, read once per profile for both (procfs.NetTables):
TCP from /proc/net/tcp and tcp6, where a connection's remote end names the listener's address;
unix stream sockets from sock_diag, where a connection's peer is the socket the server accepted,
which carries its listener's address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from schedcp.domain import procfs, sockdiag

Endpoint = tuple[str, tuple[str, int]]  # (network namespace, (address in hex, port))


def clients_of(groups: dict[str, procfs.HeldSockets], tables: procfs.NetTables) -> dict[str, list[str]]:
    """For each group (by id: the sockets it holds), the other groups whose listening sockets its
    established connections reach; groups that reach none are left out. `tables`: the profile's
    (procfs.sockets read the same ones)."""
    held = {group_id: sockets for group_id, sockets in groups.items() if sockets.inodes}
    found: dict[str, set[str]] = {}
    for group_id, servers in [*_tcp_clients(held, tables), *_unix_clients(held, tables)]:
        found.setdefault(group_id, set()).update(servers)
    return {group_id: sorted(servers) for group_id, servers in found.items() if servers}


def _tcp_clients(groups: dict[str, procfs.HeldSockets], tables: procfs.NetTables) -> Iterator[tuple[str, set[str]]]:
    listening: dict[tuple[str, int], list[tuple[str, str]]] = {}  # (namespace, port) -> [(address, group)]
    remotes: dict[str, set[Endpoint]] = {}
    for group_id, held in groups.items():
        namespace = procfs.net_namespace(held.pid)
        table = tables.tcp(held.pid)
        mine = [table[inode] for inode in held.inodes if inode in table]
        for sock in mine:
            if sock.state == procfs.TCP_LISTEN:
                listening.setdefault((namespace, sock.local[1]), []).append((sock.local[0], group_id))
        remotes[group_id] = {(namespace, sock.remote) for sock in mine if sock.state == procfs.TCP_ESTABLISHED}
    for group_id, ends in remotes.items():
        yield group_id, {server for namespace, (address, port) in ends
                         for bound, server in listening.get((namespace, port), ())
                         if server != group_id and _accepts(bound, address)}


def _accepts(bound: str, address: str) -> bool:
    """A socket bound to `bound` accepts connections to `address`: the same, or any (0.0.0.0, ::)."""
    return bound == address or not bound.strip("0")


def _unix_clients(groups: dict[str, procfs.HeldSockets],
                  tables: procfs.NetTables) -> Iterable[tuple[str, set[str]]]:
    """A group's connection whose peer another group holds, named as one of that group's
    listening sockets: the peer is the server's end, accepted there (both ends of a socket pair
    are unnamed)."""
    owner: dict[int, str] = {}
    known: dict[int, sockdiag.UnixSocket] = {}
    for group_id, held in groups.items():
        table = tables.unix(held.pid)
        for inode in held.inodes & table.keys():
            owner[inode], known[inode] = group_id, table[inode]
    listens: dict[str, set[bytes]] = {}
    for inode, sock in known.items():
        if sock.state == sockdiag.LISTEN and sock.name:
            listens.setdefault(owner[inode], set()).add(sock.name)
    clients: dict[str, set[str]] = {}
    for inode, sock in known.items():
        server = owner.get(sock.peer, owner[inode])
        if sock.state == sockdiag.ESTABLISHED and server != owner[inode] \
                and known[sock.peer].name in listens.get(server, ()):
            clients.setdefault(owner[inode], set()).add(server)
    return clients.items()
