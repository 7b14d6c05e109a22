#include "runtime/server_config.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ferry/errors.hpp>
#include <fstream>
#include <system_error>

namespace ferry::runtime {

std::filesystem::path default_state_dir() {
  if (const char* home = std::getenv("FERRY_HOME"); home && *home) return home;
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".ferry";
  return std::filesystem::path("/tmp") / ("ferry-" + std::to_string(::getuid()));
}

std::string random_token() {
  unsigned char bytes[32];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) throw std::system_error(errno, std::generic_category(), "getrandom");
    got += static_cast<std::size_t>(n);
  }
  static const char hex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += hex[b >> 4];
    token += hex[b & 15];
  }
  return token;
}

std::string read_token(const std::filesystem::path& state_dir) {
  const auto path = state_dir / "token";
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token) || token.empty()) {
    throw ConnectionError("cannot read the server's token from " + path.string() +
                          "; set FERRY_TOKEN, or FERRY_HOME to the state directory of the `ferry server` you use");
  }
  return token;
}

std::string load_or_create_token(const std::filesystem::path& state_dir) {
  std::filesystem::create_directories(state_dir);
  ::chmod(state_dir.c_str(), 0700);
  const auto path = state_dir / "token";
  if (std::filesystem::exists(path)) {
    ::chmod(path.c_str(), 0600);
    return read_token(state_dir);
  }
  const std::string token = random_token();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + path.string());
  const std::string line = token + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw std::system_error(errno, std::generic_category(), "cannot write " + path.string());
  return token;
}

}  // namespace ferry::runtime
