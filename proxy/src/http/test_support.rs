//! Helpers shared by the HTTP modules' unit tests.

use tokio::net::{TcpListener, TcpStream};

/// Both ends of a fresh loopback TCP connection: (client, server).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}
