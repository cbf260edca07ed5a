import * as net from 'node:net';
import * as tls from 'node:tls';

/** Where a connection goes. */
export interface ServerAddress {
  /** `host:port`, `[v6]:port` or the socket path. */
  id: string;
  /** Host name or IP (without brackets), or the socket path for unix sockets. */
  host: string;
  /** TCP port; 0 for unix sockets. */
  port: number;
  /** True for a unix domain socket. */
  unix: boolean;
}

/**
 * Opens a socket to `server`: TCP (IPv4 or IPv6), a unix socket, or TLS over either. Nagle is
 * off (requests are already coalesced per tick) and keep-alive on when asked.
 */
export function openSocket(
  server: ServerAddress,
  tlsOptions: tls.ConnectionOptions | undefined,
  keepAlive: boolean,
  onConnected: () => void,
): net.Socket {
  let socket: net.Socket;
  if (tlsOptions !== undefined) {
    const options: tls.ConnectionOptions = { ...tlsOptions };
    if (server.unix) options.path = server.host;
    else {
      options.host = server.host;
      options.port = server.port;
      if (options.servername === undefined && net.isIP(server.host) === 0) {
        options.servername = server.host;
      }
    }
    socket = tls.connect(options, onConnected);
  } else {
    socket = server.unix
      ? net.connect({ path: server.host }, onConnected)
      : net.connect({ host: server.host, port: server.port }, onConnected);
  }
  socket.setNoDelay(true);
  if (keepAlive) socket.setKeepAlive(true, 30_000);
  return socket;
}
