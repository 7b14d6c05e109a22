// TLS between hosts (OpenSSL through Asio). A server that other hosts can reach has a certificate of its
// own, self-signed and made on its first start; its agents, their containers and remote programs accept
// that certificate alone, named by its SHA-256 fingerprint (a "pin"), so no certificate authority is
// involved and nothing else can stand in for the server. Connections within one host (a Unix socket, or
// loopback TCP) stay plain: no one else sees them, and they are the hot path.
//
// Thread-safe, except where a function says it works on a stream (which is confined to its executor).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "wire/stream.hpp"

namespace ferry::wire::tls {

/// The server's certificate and private key (PEM), and the certificate's fingerprint.
struct identity {
  std::string certificate_pem;
  std::string key_pem;
  std::string fingerprint;
};

/// The names of the files load_or_create_identity keeps in a state directory.
inline constexpr std::string_view certificate_file = "tls-cert.pem";
inline constexpr std::string_view key_file = "tls-key.pem";

/// A new identity: an EC P-256 key and a self-signed certificate for it, valid for 100 years, naming this
/// host and its addresses (so that `curl --cacert tls-cert.pem https://HOST:PORT/` accepts it too).
identity create_identity();
/// The identity in `dir` (tls-cert.pem, and tls-key.pem of mode 0600), made and written first when the
/// directory has none. Throws naming the file and the fix when one is unreadable or not private.
identity load_or_create_identity(const std::filesystem::path& dir);

/// "sha256:" and the 64 lower-case hex digits of the SHA-256 of a PEM certificate's DER form: what
/// `openssl x509 -noout -fingerprint -sha256 -in tls-cert.pem` prints (there upper-case, in pairs with colons).
std::string fingerprint_of_pem(std::string_view certificate_pem);

/// What FERRY_SERVER_CERT and --server-cert take, as a fingerprint: either a fingerprint ("sha256:" and 64
/// hex digits, pairs separated by colons or not, either case) or the path of a PEM certificate (a copy of
/// the server's tls-cert.pem). Throws ferry::Error saying what it expected.
std::string parse_pin(const std::string& text);

/// What TLS connections of one side share: the server's (its certificate and key) or clients' (TLS 1.3;
/// the server's certificate is checked by its pin alone). Opaque: defined in tls.cpp.
class context;

/// The context of a server's TLS connections. Throws naming the fix when the key is not the certificate's.
std::shared_ptr<context> server_context(const identity& id);

/// The context of clients' TLS connections.
std::shared_ptr<context> client_context();

/// Called once with "" when a handshake has succeeded, or with why it failed; `wrong_certificate` when the
/// server presented another certificate than the pinned one (trying again will not help).
using handshake_done = std::function<void(const std::string& error, bool wrong_certificate)>;

/// Makes `socket` a TLS stream and handshakes as a client that accepts only the certificate `pin` names
/// (a fingerprint). `done` runs on the socket's executor; the stream is ready when the error is "".
void async_client_handshake(const std::shared_ptr<stream>& s, const std::string& pin, handshake_done done);
/// Handshakes as the server, given the bytes of the client's hello read off the socket already (to tell
/// TLS from the other protocols on the port).
void async_server_handshake(const std::shared_ptr<stream>& s, std::string already_received, handshake_done done);

/// The stream a client at `socket` uses: TLS (not yet handshaken) when the server is on another host.
std::shared_ptr<stream> client_stream(socket_type socket);

/// A TLS stream over `socket` in `context` (the server's, for a client that began with a TLS hello; or
/// clients'), not yet handshaken.
std::shared_ptr<stream> stream_over(socket_type socket, std::shared_ptr<context> context);

}  // namespace ferry::wire::tls
