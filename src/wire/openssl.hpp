// OpenSSL, loaded when TLS is first used rather than at every process's start (openssl.cpp says how).
#pragma once

namespace ferry::wire::openssl {

/// Loads libssl (with its libcrypto) and binds the OpenSSL functions tls.cpp calls; once, later calls
/// return at once. tls.cpp calls it before its first OpenSSL call. Throws ferry::Error naming the library
/// and the fix when it cannot; TLS is then unavailable, and nothing else is affected.
void load();

}  // namespace ferry::wire::openssl
