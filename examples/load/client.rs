//! The load generator's own HTTP/1.1 client: raw keep-alive connections, a POST loop and
//! an SSE reader that counts frames with `memchr` instead of a general parser, so that the
//! client costs far less per operation than the server it measures.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::secure::{self, Conn};

/// Loopback source addresses the connections are spread over (127.0.0.1 ..= 127.0.0.16),
/// so that tens of thousands of connections never run out of ephemeral ports.
const SOURCE_ADDRESSES: usize = 16;

/// Opens connection number `index` to `addr`, from one of several loopback sources.
pub async fn connect(addr: SocketAddr, index: usize) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if addr.ip().is_loopback() {
        let last = u8::try_from(1 + index % SOURCE_ADDRESSES).unwrap_or(1);
        socket.bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The parts of a response head the generator needs.
struct Head {
    status: u16,
    chunked: bool,
    content_length: Option<usize>,
    /// Bytes of the head, including the blank line.
    len: usize,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    Ok(Some(Head {
        status,
        chunked,
        content_length,
        len: end + 4,
    }))
}

/// A keep-alive connection that posts one request at a time.
pub struct Poster {
    stream: Conn,
    host: String,
    buf: Vec<u8>,
    request: Vec<u8>,
    /// The bearer token each post presents, if any.
    token: Option<&'static str>,
}

impl Poster {
    /// Connects poster number `index`.
    pub async fn connect(addr: SocketAddr, index: usize) -> io::Result<Self> {
        Ok(Self {
            stream: secure::connect(addr, index).await?,
            host: addr.to_string(),
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(512),
            token: None,
        })
    }

    /// The same poster, presenting `token` as `Authorization: Bearer` on every post.
    pub fn presenting(mut self, token: Option<&'static str>) -> Self {
        self.token = token;
        self
    }

    /// POSTs `body` as JSON to `path` and returns the response status once the whole
    /// response has been read.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> io::Result<u16> {
        self.request.clear();
        let authorization = self
            .token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        self.request.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n",
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<u16> {
        self.buf.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.fill().await?;
        };
        let mut body = self.buf.split_off(head.len);
        if head.chunked {
            // Small answers only: read until the last chunk's terminator.
            while memmem::find(&body, b"0\r\n\r\n").is_none() {
                let n = self.read_more(&mut body).await?;
                if n == 0 {
                    return Err(bad("connection closed inside a chunked answer"));
                }
            }
        } else {
            let want = head.content_length.unwrap_or(0);
            while body.len() < want {
                if self.read_more(&mut body).await? == 0 {
                    return Err(bad("connection closed inside an answer"));
                }
            }
        }
        Ok(head.status)
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let n = self.read_more(&mut buf).await;
        self.buf = buf;
        match n? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }

    async fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.reserve(4096);
        self.stream.read_buf(buf).await
    }
}

/// One SSE event as the reader saw it: its id line and its first data line.
pub struct Event<'a> {
    /// The value of the `id:` line, if any.
    pub id: Option<&'a [u8]>,
    /// The value of the first `data:` line.
    pub data: &'a [u8],
}

/// Where the chunked-transfer decoder is.
#[derive(Clone, Copy)]
enum Chunk {
    Size(usize),
    Extension(usize),
    SizeLf(usize),
    Data(usize),
    DataCr,
    DataLf,
    Done,
}

/// Where a stream's body comes from.
enum Source {
    /// An HTTP/1.1 response, chunked or not, on a connection of its own.
    Http1(Conn),
    /// An HTTP/2 stream (an HTTPS server), on a connection shared with others.
    Http2(h2::RecvStream),
}

/// An open `GET /events` stream.
pub struct Subscription {
    source: Source,
    read: Vec<u8>,
    /// Decoded body bytes not yet split into events.
    pending: Vec<u8>,
    chunk: Option<Chunk>,
    blank_line: memmem::Finder<'static>,
}

impl Subscription {
    /// Opens stream number `index` at `path` (with its query) and reads the response head.
    pub async fn open(
        addr: SocketAddr,
        index: usize,
        path: &str,
        last_event_id: Option<&str>,
        read_buffer: usize,
    ) -> io::Result<Self> {
        if let Some(body) = secure::open_h2_stream(addr, index, path, last_event_id).await? {
            return Ok(Self {
                source: Source::Http2(body),
                read: Vec::with_capacity(read_buffer),
                pending: Vec::with_capacity(read_buffer),
                chunk: None,
                blank_line: memmem::Finder::new(b"\n\n"),
            });
        }
        let mut stream = secure::connect(addr, index).await?;
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head_buf = Vec::with_capacity(1024);
        let head = loop {
            if let Some(head) = parse_head(&head_buf)? {
                break head;
            }
            head_buf.reserve(1024);
            if stream.read_buf(&mut head_buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        if head.status != 200 {
            return Err(bad(format!("GET {path} answered {}", head.status)));
        }
        let mut subscription = Self {
            source: Source::Http1(stream),
            read: Vec::with_capacity(read_buffer),
            pending: Vec::with_capacity(read_buffer),
            chunk: head.chunked.then_some(Chunk::Size(0)),
            blank_line: memmem::Finder::new(b"\n\n"),
        };
        let rest = head_buf.split_off(head.len);
        subscription.decode(&rest)?;
        Ok(subscription)
    }

    /// Waits for the next read from the socket and calls `on_event` for every event it
    /// completes. Returns false when the server closed the stream.
    pub async fn read_events(&mut self, mut on_event: impl FnMut(Event<'_>)) -> io::Result<bool> {
        self.read.clear();
        let stream = match &mut self.source {
            Source::Http1(stream) => stream,
            Source::Http2(body) => {
                let open = secure::read_h2(body, &mut self.pending).await?;
                self.split_events(&mut on_event);
                return Ok(open);
            }
        };
        let n = stream.read_buf(&mut self.read).await?;
        if n == 0 {
            return Ok(false);
        }
        let read = std::mem::take(&mut self.read);
        let decoded = self.decode(&read);
        self.read = read;
        decoded?;
        self.split_events(&mut on_event);
        Ok(!matches!(self.chunk, Some(Chunk::Done)))
    }

    /// Events already received with the response head.
    pub fn buffered_events(&mut self, mut on_event: impl FnMut(Event<'_>)) {
        self.split_events(&mut on_event);
    }

    /// Appends the body bytes in `input` to `pending`, undoing chunked encoding.
    fn decode(&mut self, input: &[u8]) -> io::Result<()> {
        let Some(mut state) = self.chunk else {
            self.pending.extend_from_slice(input);
            return Ok(());
        };
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            state = match state {
                Chunk::Size(n) => match b {
                    b'\r' => Chunk::SizeLf(n),
                    b';' => Chunk::Extension(n),
                    _ => {
                        let digit = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| bad("bad chunk size"))?;
                        Chunk::Size(n * 16 + digit as usize)
                    }
                },
                Chunk::Extension(n) => match b {
                    b'\r' => Chunk::SizeLf(n),
                    _ => Chunk::Extension(n),
                },
                Chunk::SizeLf(0) => Chunk::Done,
                Chunk::SizeLf(n) => Chunk::Data(n),
                Chunk::Data(n) => {
                    let take = n.min(input.len() - i);
                    self.pending.extend_from_slice(&input[i..i + take]);
                    i += take;
                    state = if take == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n - take)
                    };
                    continue;
                }
                Chunk::DataCr => Chunk::DataLf,
                Chunk::DataLf => Chunk::Size(0),
                Chunk::Done => break,
            };
            i += 1;
        }
        self.chunk = Some(state);
        Ok(())
    }

    fn split_events(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        let mut start = 0;
        while let Some(len) = self.blank_line.find(&self.pending[start..]) {
            let block = &self.pending[start..start + len];
            start += len + 2;
            let mut id = None;
            let mut data = None;
            for line in block.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(value) = field(line, b"id") {
                    id = Some(value);
                } else if data.is_none() {
                    data = field(line, b"data");
                }
            }
            if let Some(data) = data {
                on_event(Event { id, data });
            }
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }
}

/// The value of `line` when it is the field `name` (`name: value` or `name:value`).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}
