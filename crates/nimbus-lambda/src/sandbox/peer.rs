//! Which uid opened the client end of a loopback TCP connection: how an instance's
//! Runtime API tells its own instance from any other process on the host.
//!
//! The kernel records the uid that created each socket. It is asked with one exact
//! sock_diag lookup over netlink (what `ss` uses, `linux/inet_diag.h`), which costs the
//! same however many sockets the host has; reading `/proc/net/tcp` (every socket, a line
//! each) is the fallback, and the only way for an IPv6 socket connected to an IPv4-mapped
//! address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// The uid owning the client socket of a loopback connection from `remote` to `local`
/// (the addresses as the server's accepted socket sees them).
pub(crate) fn socket_owner(remote: SocketAddr, local: SocketAddr) -> Option<u32> {
    if let (SocketAddr::V4(remote), SocketAddr::V4(local)) = (remote, local)
        && let Some(uid) = diag_owner(remote, local)
    {
        return Some(uid);
    }
    proc_owner(remote, local)
}

/// `struct inet_diag_sockid`: ports and addresses in network byte order.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [[u8; 4]; 4],
    dst: [[u8; 4]; 4],
    interface: u32,
    cookie: [u32; 2],
}

/// A netlink header followed by `struct inet_diag_req_v2`.
#[repr(C)]
struct DiagRequest {
    header: libc::nlmsghdr,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// `struct inet_diag_msg`, the answer's payload.
#[repr(C)]
#[derive(Clone, Copy)]
struct DiagMessage {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

/// `SOCK_DIAG_BY_FAMILY`, the request and answer type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// One exact lookup of the socket whose local end is `remote` and whose remote end is
/// `local`; `None` when the kernel does not know it or netlink is not available.
fn diag_owner(remote: SocketAddrV4, local: SocketAddrV4) -> Option<u32> {
    let id = SockId {
        sport: remote.port().to_be_bytes(),
        dport: local.port().to_be_bytes(),
        src: [remote.ip().octets(), [0; 4], [0; 4], [0; 4]],
        dst: [local.ip().octets(), [0; 4], [0; 4], [0; 4]],
        interface: 0,
        // INET_DIAG_NOCOOKIE: look the socket up by its addresses.
        cookie: [u32::MAX; 2],
    };
    let request = DiagRequest {
        header: libc::nlmsghdr {
            nlmsg_len: u32::try_from(size_of::<DiagRequest>()).ok()?,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: u16::try_from(libc::NLM_F_REQUEST).ok()?,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        family: u8::try_from(libc::AF_INET).ok()?,
        protocol: u8::try_from(libc::IPPROTO_TCP).ok()?,
        ext: 0,
        pad: 0,
        states: u32::MAX,
        id,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `request` is a live, fully initialised repr(C) value of the length given.
    let sent = unsafe {
        libc::send(
            fd.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<DiagRequest>(),
            0,
        )
    };
    if usize::try_from(sent).ok()? != size_of::<DiagRequest>() {
        return None;
    }
    // The kernel answers within send(2), so the answer is queued already.
    let mut answer = [0u64; 64];
    // SAFETY: the buffer is valid for writes of its whole size.
    let n_read = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            answer.as_mut_ptr().cast(),
            size_of_val(&answer),
            libc::MSG_DONTWAIT,
        )
    };
    let n_read = usize::try_from(n_read).ok()?;
    let header_len = size_of::<libc::nlmsghdr>();
    if n_read < header_len + size_of::<DiagMessage>() {
        return None;
    }
    let bytes: &[u8] = {
        // SAFETY: `answer` is plain integers; viewing its first `n_read` initialised
        // bytes as u8 is always valid.
        unsafe { std::slice::from_raw_parts(answer.as_ptr().cast::<u8>(), n_read) }
    };
    let kind = u16::from_ne_bytes([*bytes.get(4)?, *bytes.get(5)?]);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    // SAFETY: the answer holds a whole `inet_diag_msg` after the header (checked above);
    // read_unaligned copies it out whatever the buffer's alignment.
    let message: DiagMessage =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(header_len).cast::<DiagMessage>()) };
    // The kernel found the socket by these addresses; check it is the one asked for.
    (message.id.sport == id.sport && message.id.dport == id.dport).then_some(message.uid)
}

/// The uid from `/proc/net/tcp` and `tcp6`, read whole.
fn proc_owner(remote: SocketAddr, local: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        table
            .lines()
            .skip(1)
            .find_map(|line| owner_in_line(line, remote, local))
    })
}

/// The uid of a `/proc/net/tcp` line whose local end is `remote` and whose remote end is
/// `local` (the client's side of the connection), if this line is that socket.
fn owner_in_line(line: &str, remote: SocketAddr, local: SocketAddr) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (sock_local, sock_remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
    if parse_proc_addr(sock_local)? != normalize(remote)
        || parse_proc_addr(sock_remote)? != normalize(local)
    {
        return None;
    }
    uid.parse().ok()
}

fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// `0100007F:1F90` (an IPv4 address as the kernel's native-endian word, then the port) or
/// its 32-digit IPv6 form, as `/proc/net/tcp` and `tcp6` print them.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (idx, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(idx * 8..idx * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(normalize(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_name_the_owner_of_the_client_socket() {
        let remote: SocketAddr = "127.0.0.1:41140".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        // The client's socket (local 41140, remote 8080), owned by uid 200001.
        let client = "   3: 0100007F:A0B4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 200001        0 1234 1 0000000000000000 20 4 30 10 -1";
        // The server's accepted socket: the same pair the other way round, owned by root.
        let server = "   4: 0100007F:1F90 0100007F:A0B4 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(owner_in_line(client, remote, local), Some(200_001));
        assert_eq!(owner_in_line(server, remote, local), None);
        // An IPv6 socket connected to the IPv4-mapped loopback address.
        let mapped = "   0: 0000000000000000FFFF00000100007F:A0B4 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 99 1";
        assert_eq!(owner_in_line(mapped, remote, local), Some(1000));
    }

    #[tokio::test]
    async fn a_connection_is_traced_to_the_uid_that_opened_it_both_ways() {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let local = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(local)
            .await
            .expect("connect");
        let (_stream, remote) = listener.accept().await.expect("accept");
        // SAFETY: geteuid(2) has no preconditions.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(proc_owner(remote, local), Some(uid));
        let (SocketAddr::V4(remote_v4), SocketAddr::V4(local_v4)) = (remote, local) else {
            panic!("loopback IPv4 addresses");
        };
        assert_eq!(diag_owner(remote_v4, local_v4), Some(uid));
        assert_eq!(socket_owner(remote, local), Some(uid));
        // Nobody has a socket from a port nobody connected from.
        let unknown: SocketAddrV4 = "127.0.0.1:1".parse().expect("addr");
        assert_eq!(diag_owner(unknown, local_v4), None);
    }
}
