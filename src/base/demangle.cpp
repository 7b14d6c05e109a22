// ferry::detail::demangle (errors.hpp): the codec names the types it cannot decode, the client the
// exception types a body threw.
#include <cxxabi.h>

#include <cstdlib>
#include <ferry/errors.hpp>
#include <memory>
#include <string>

namespace ferry::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

}  // namespace ferry::detail
