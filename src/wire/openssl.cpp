// OpenSSL, loaded when TLS is first used rather than at every process's start.
//
// Every program and container carries ferry's TLS, yet most never use it: connections within a host are
// plain. Linked the usual way, libssl and libcrypto cost each process's start the dynamic loader's work on
// them (about 7 ms of a cold start here, and 1.7 MiB of memory: docs/benchmarks.md, W6). So, on the
// processors below, tls.cpp is compiled with openssl_renames.hpp first (made by src/CMakeLists.txt from
// openssl_functions.txt), which renames each OpenSSL function NAME it calls, Asio's SSL stream included,
// to ferry_openssl_NAME. Here each ferry_openssl_NAME is a stand-in of two instructions that jumps through
// a table, and load() fills the table from libssl with dlsym, once, before tls.cpp's first OpenSSL call.
// The stand-ins are hidden symbols with names of their own, so a program's own use of OpenSSL never meets
// them. (Implib.so makes such stand-ins for any library, binding each at its first call; one function
// binds them all here, as tls.cpp has few ways in and each calls load() first.) Elsewhere
// FERRY_LAZY_OPENSSL is 0 and tls.cpp links OpenSSL as usual.
#include "wire/openssl.hpp"

#if FERRY_LAZY_OPENSSL
#include <dlfcn.h>
#include <openssl/opensslv.h>

#include <cstdio>
#include <cstdlib>
#include <ferry/errors.hpp>
#include <iterator>
#include <mutex>
#include <string>

namespace {

/// Where a stand-in jumps before load(): a call that tls.cpp made without calling load() first.
[[noreturn]] void unbound() {
  std::fputs("ferry: an OpenSSL function was called before wire::openssl::load() (a bug in ferry)\n", stderr);
  std::abort();
}

}  // namespace

extern "C" {
/// The table the stand-ins jump through, in openssl_functions.inc's order.
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables,cppcoreguidelines-avoid-c-arrays): read by the
// stand-ins
__attribute__((visibility("hidden"))) void* ferry_openssl_slots[] = {
#define FERRY_OPENSSL(index, name) reinterpret_cast<void*>(&unbound),
#include "wire/openssl_functions.inc"
#undef FERRY_OPENSSL
};
}

// The stand-ins: ferry_openssl_NAME jumps to ferry_openssl_slots[index].
#if defined(__x86_64__)
#define FERRY_OPENSSL(index, name)                                                                         \
  asm(".pushsection .text\n.globl ferry_openssl_" #name "\n.hidden ferry_openssl_" #name                   \
      "\n.type ferry_openssl_" #name ", @function\nferry_openssl_" #name                                   \
      ":\nendbr64\n"                                                                                       \
      "jmp *ferry_openssl_slots+8*" #index "(%rip)\n.size ferry_openssl_" #name ", .-ferry_openssl_" #name \
      "\n.popsection\n");
#elif defined(__aarch64__)
#define FERRY_OPENSSL(index, name)                                                                      \
  asm(".pushsection .text\n.globl ferry_openssl_" #name "\n.hidden ferry_openssl_" #name                \
      "\n.type ferry_openssl_" #name ", %function\nferry_openssl_" #name                                \
      ":\nhint 34\n" /* bti c */                                                                        \
      "adrp x16, ferry_openssl_slots+8*" #index "\nldr x16, [x16, #:lo12:ferry_openssl_slots+8*" #index \
      "]\n"                                                                                             \
      "br x16\n.size ferry_openssl_" #name ", .-ferry_openssl_" #name "\n.popsection\n");
#else
#error "FERRY_LAZY_OPENSSL on a processor without stand-ins: src/CMakeLists.txt should have set it to 0"
#endif
#include "wire/openssl_functions.inc"
#undef FERRY_OPENSSL

namespace ferry::wire::openssl {

void load() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    // The library of the OpenSSL whose headers tls.cpp was compiled with: libssl.so.3 for OpenSSL 3.
    const std::string library = "libssl.so." + std::to_string(OPENSSL_VERSION_MAJOR);
    void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      failure = "cannot load " + library + " (" + ::dlerror() + "), which TLS between hosts needs: install " +
                "OpenSSL " + std::to_string(OPENSSL_VERSION_MAJOR) + " (Debian: apt-get install libssl3)";
      return;
    }
    static const char* const names[] = {
#define FERRY_OPENSSL(index, name) #name,
#include "wire/openssl_functions.inc"
#undef FERRY_OPENSSL
    };
    static_assert(std::size(names) == std::size(ferry_openssl_slots));
    for (std::size_t i = 0; i < std::size(names); ++i) {
      // (dlsym searches libssl and then what it needs, libcrypto.)
      void* function = ::dlsym(handle, names[i]);
      if (function == nullptr) {
        failure = library + " has no " + names[i] + ": TLS needs OpenSSL " + std::to_string(OPENSSL_VERSION_MAJOR) +
                  " as ferry was built with (" OPENSSL_VERSION_TEXT ")";
        return;
      }
      ferry_openssl_slots[i] = function;
    }
  });
  if (!failure.empty()) throw Error("TLS: " + failure);
}

}  // namespace ferry::wire::openssl

#else

namespace ferry::wire::openssl {

void load() {}  // linked as usual: loaded at the start

}  // namespace ferry::wire::openssl

#endif
