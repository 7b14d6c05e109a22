// The OpenSSL functions this file calls are bound at the first use of TLS (openssl.cpp): first of all,
// their names become those of openssl.cpp's stand-ins, in OpenSSL's and Asio's headers as in this file.
#if FERRY_LAZY_OPENSSL
#include "wire/openssl_renames.hpp"
#endif

#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <cctype>
#include <cstring>
#include <ferry/errors.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "wire/openssl.hpp"
#include "wire/tls.hpp"

namespace ferry::wire::tls {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;

namespace {

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* p) const { Free(p); }
};
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;

[[noreturn]] void fail(const std::string& what) { throw Error("TLS: " + what); }

}  // namespace

class context {
 public:
  explicit context(ssl::context::method method) : ssl(after_loading_openssl(method)) {}
  ssl::context ssl;

 private:
  static ssl::context::method after_loading_openssl(ssl::context::method method) {
    openssl::load();  // (before ssl::context's constructor calls OpenSSL)
    return method;
  }
};

namespace {

/// TLS over a socket, with Asio's OpenSSL stream; it keeps its context alive.
class openssl_layer final : public tls_layer {
 public:
  openssl_layer(socket_type socket, std::shared_ptr<context> c)
      : context_(std::move(c)), ssl_(std::move(socket), context_->ssl) {}

  socket_type& socket() noexcept override { return ssl_.next_layer(); }
  void async_read_some(asio::mutable_buffer buffer, io_handler handler) override {
    ssl_.async_read_some(buffer, std::move(handler));
  }
  void async_write_some(asio::const_buffer buffer, io_handler handler) override {
    ssl_.async_write_some(buffer, std::move(handler));
  }
  void async_shutdown(shutdown_handler handler) override { ssl_.async_shutdown(std::move(handler)); }

  ssl::stream<socket_type>& ssl() noexcept { return ssl_; }

 private:
  std::shared_ptr<context> context_;
  ssl::stream<socket_type> ssl_;
};

ssl::stream<socket_type>& ssl_of(stream& s) { return static_cast<openssl_layer&>(s.tls()).ssl(); }

std::string fingerprint_of(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), md, &length) != 1) fail("cannot take a certificate's fingerprint");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned int i = 0; i < length; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0xf];
  }
  return out;
}

// What was written into a memory BIO, as text.
std::string text_of(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return {data, static_cast<std::size_t>(size)};
}

std::string pem_of(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) fail("cannot write a certificate");
  return text_of(bio.get());
}

std::string pem_of(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    fail("cannot write a private key");
  }
  return text_of(bio.get());
}

x509_ptr read_certificate(std::string_view pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  x509_ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  return cert;
}

/// This host's name and addresses, for the certificate's subjectAltName: "DNS:name,IP:a,IP:b".
std::string subject_alt_names() {
  std::set<std::string> names{"DNS:localhost"};
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && *host) names.insert(std::string("DNS:") + host);
  ifaddrs* addresses = nullptr;
  if (::getifaddrs(&addresses) == 0) {
    for (const ifaddrs* a = addresses; a; a = a->ifa_next) {
      if (!a->ifa_addr) continue;
      if (a->ifa_addr->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);  // NOLINT: the sockaddr family says so
        names.insert("IP:" + asio::ip::make_address_v4(ntohl(in->sin_addr.s_addr)).to_string());
      } else if (a->ifa_addr->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);  // NOLINT: as above
        asio::ip::address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
        const asio::ip::address_v6 v6(bytes);
        if (!v6.is_link_local()) names.insert("IP:" + v6.to_string());
      }
    }
    ::freeifaddrs(addresses);
  }
  std::string joined;
  for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
  return joined;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string() + ": " + std::generic_category().message(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_new_file(const std::filesystem::path& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + path.string());
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int error = errno;
  ::close(fd);
  if (!ok) throw std::system_error(error, std::generic_category(), "cannot write " + path.string());
}

}  // namespace

identity create_identity() {
  openssl::load();
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) fail("cannot make a key");
  x509_ptr cert(X509_new());
  if (!cert) fail("cannot make a certificate");
  X509_set_version(cert.get(), 2);
  std::uint64_t serial = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial);  // NOLINT: bytes of an integer
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial >> 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // (another host's clock may be behind)
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), 36500, 0, nullptr);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("ferry server"), -1, -1,
                             0);  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast): OpenSSL's bytes
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::string alt_names = subject_alt_names();
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, alt_names.c_str())) {
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign the certificate");
  return {pem_of(cert.get()), pem_of(key.get()), fingerprint_of(cert.get())};
}

identity load_or_create_identity(const std::filesystem::path& dir) {
  const auto cert_path = dir / certificate_file;
  const auto key_path = dir / key_file;
  if (!std::filesystem::exists(cert_path) && !std::filesystem::exists(key_path)) {
    identity made = create_identity();
    write_new_file(key_path, made.key_pem, 0600);
    write_new_file(cert_path, made.certificate_pem, 0644);
    return made;
  }
  struct stat st {};
  if (::stat(key_path.c_str(), &st) == 0 && (st.st_uid != ::geteuid() || (st.st_mode & 077) != 0)) {
    throw Error(key_path.string() + " is not private to you, so the server's TLS key may have leaked: delete " +
                key_path.string() + " and " + cert_path.string() +
                " and the server makes new ones (agents and programs on other hosts then need the new "
                "certificate), or run `chmod 600 " +
                key_path.string() + "` if you are sure no one read it");
  }
  identity id{read_file(cert_path), read_file(key_path), {}};
  id.fingerprint = fingerprint_of_pem(id.certificate_pem);
  // A key that is not the certificate's would fail every handshake; say so now.
  server_context(id);
  return id;
}

std::string fingerprint_of_pem(std::string_view certificate_pem) {
  openssl::load();
  x509_ptr cert = read_certificate(certificate_pem);
  if (!cert) throw Error("not a PEM certificate (it should begin with -----BEGIN CERTIFICATE-----)");
  return fingerprint_of(cert.get());
}

std::string parse_pin(const std::string& text) {
  std::string_view rest(text);
  const bool prefixed = rest.size() > 7 && (rest.substr(0, 7) == "sha256:" || rest.substr(0, 7) == "SHA256:");
  if (prefixed) rest.remove_prefix(7);
  std::string digits;
  bool all_hex = true;
  for (const char c : rest) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) all_hex = false;
    digits += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (all_hex && digits.size() == 64) return "sha256:" + digits;
  if (!prefixed && std::filesystem::is_regular_file(text)) {
    try {
      return fingerprint_of_pem(read_file(text));
    } catch (const Error& e) {
      throw Error(text + ": " + e.what() + "; give a copy of the server's tls-cert.pem, or its fingerprint");
    }
  }
  throw Error("'" + text +
              "' is not a server certificate: give the server's fingerprint (sha256: and 64 hex digits, as "
              "`ferry server` prints it at start) or a copy of its tls-cert.pem (in its state directory)");
}

std::shared_ptr<context> server_context(const identity& id) {
  auto made = std::make_shared<context>(ssl::context::tls_server);
  ssl::context* c = &made->ssl;
  SSL_CTX_set_min_proto_version(c->native_handle(), TLS1_3_VERSION);
  try {
    c->use_certificate_chain(asio::buffer(id.certificate_pem));
    c->use_private_key(asio::buffer(id.key_pem), ssl::context::pem);
  } catch (const boost::system::system_error& e) {
    fail(std::string("the server's certificate or key (") + std::string(certificate_file) + ", " +
         std::string(key_file) + ") cannot be used: " + e.code().message() +
         "; delete both and the server makes new ones");
  }
  if (SSL_CTX_check_private_key(c->native_handle()) != 1) {
    fail(std::string(key_file) + " is not the key of " + std::string(certificate_file) +
         "; delete both and the server makes new ones");
  }
  return made;
}

std::shared_ptr<context> client_context() {
  static const std::shared_ptr<context> shared = [] {
    auto made = std::make_shared<context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(made->ssl.native_handle(), TLS1_3_VERSION);
    return made;
  }();
  return shared;
}

std::shared_ptr<stream> client_stream(socket_type socket) {
  if (const peer p = peer_of(socket); p.known && p.on_this_host) return std::make_shared<stream>(std::move(socket));
  return stream_over(std::move(socket), client_context());
}

std::shared_ptr<stream> stream_over(socket_type socket, std::shared_ptr<context> context) {
  auto executor = socket.get_executor();
  return std::make_shared<stream>(std::move(executor),
                                  std::make_unique<openssl_layer>(std::move(socket), std::move(context)));
}

void async_client_handshake(const std::shared_ptr<stream>& s, const std::string& pin, handshake_done done) {
  // Only the pinned certificate passes: the chain's other certificates (a self-signed one has none) are
  // not what the server proves to hold the key of.
  auto presented = std::make_shared<std::string>();
  ssl_of(*s).set_verify_mode(ssl::verify_peer);
  ssl_of(*s).set_verify_callback([pin, presented](bool, ssl::verify_context& ctx) {
    X509_STORE_CTX* store = ctx.native_handle();
    if (X509_STORE_CTX_get_error_depth(store) > 0) return true;
    *presented = fingerprint_of(X509_STORE_CTX_get_current_cert(store));
    return *presented == pin;
  });
  ssl_of(*s).async_handshake(ssl::stream_base::client, [s, pin, presented,
                                                        done = std::move(done)](boost::system::error_code ec) {
    if (!ec) return done("", false);
    if (!presented->empty() && *presented != pin) {
      return done("it presents the TLS certificate " + *presented + ", not the pinned " + pin +
                      " (FERRY_SERVER_CERT, or --server-cert): if the server's certificate was made anew, give the new "
                      "one (its state directory's tls-cert.pem); otherwise something else answers at that address",
                  true);
    }
    done("the TLS handshake failed: " + ec.message(), false);
  });
}

void async_server_handshake(const std::shared_ptr<stream>& s, std::string already_received, handshake_done done) {
  auto received = std::make_shared<std::string>(std::move(already_received));
  ssl_of(*s).async_handshake(ssl::stream_base::server, asio::buffer(*received),
                             [s, received, done = std::move(done)](boost::system::error_code ec, std::size_t) {
                               done(ec ? "the TLS handshake failed: " + ec.message() : "", false);
                             });
}

}  // namespace ferry::wire::tls

namespace ferry::wire {

bool is_end_of_stream(const boost::system::error_code& ec) {
  return ec == boost::asio::error::eof || ec == boost::asio::ssl::error::stream_truncated;
}

}  // namespace ferry::wire
