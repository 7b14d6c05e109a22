#include "runtime/server_config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ferry/errors.hpp>
#include <fstream>
#include <system_error>

#include "base/secrets.hpp"

namespace ferry::runtime {

std::filesystem::path default_state_dir() {
  if (const char* home = std::getenv("FERRY_HOME"); home && *home) return home;
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".ferry";
  return std::filesystem::path("/tmp") / ("ferry-" + std::to_string(::getuid()));
}

std::string read_token(const std::filesystem::path& state_dir, const std::string& file) {
  const auto path = state_dir / file;
  std::ifstream in(path);
  const int open_error = errno;
  std::string token;
  if (!in || !std::getline(in, token) || token.empty()) {
    const std::string why = !in ? std::generic_category().message(open_error) : "it is empty";
    throw ConnectionError("cannot read the server's token from " + path.string() + " (" + why +
                          "); set FERRY_TOKEN, or FERRY_HOME (or --state-dir) to the state directory of the "
                          "`ferry server` you use");
  }
  return token;
}

namespace {

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

}  // namespace

void check_state_dir(const std::filesystem::path& state_dir) {
  const std::string dir = state_dir.string();
  if (!std::filesystem::exists(state_dir)) {
    // Private from the start: no moment in which another user could open it.
    if (state_dir.has_parent_path()) std::filesystem::create_directories(state_dir.parent_path());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::system_error(errno, std::generic_category(), "cannot create " + dir);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw std::system_error(errno, std::generic_category(), "cannot stat " + dir);
  if (!S_ISDIR(st.st_mode)) throw std::runtime_error(dir + " is not a directory; give --state-dir a directory");
  if (st.st_uid != ::geteuid()) {
    throw std::runtime_error("state directory " + dir + " belongs to uid " + std::to_string(st.st_uid) +
                             ", not to you (uid " + std::to_string(::geteuid()) +
                             "); the server keeps its token there: give --state-dir a directory of your own");
  }
  if ((st.st_mode & 077) != 0) {
    throw std::runtime_error("state directory " + dir + " is open to other users (mode " + octal_mode(st.st_mode) +
                             "); it holds the server's token and every stored call's arguments and results: run "
                             "`chmod 700 " +
                             dir + "`, or give --state-dir a new directory");
  }
}

std::string load_or_create_token(const std::filesystem::path& state_dir, const std::string& file) {
  const auto path = state_dir / file;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
      throw std::runtime_error(path.string() + " is not private to you (mode " + octal_mode(st.st_mode) +
                               ", owner uid " + std::to_string(st.st_uid) +
                               "), so the token may have leaked: delete it and the server makes a new one (programs "
                               "then need the new token), or run `chmod 600 " +
                               path.string() + "` if you are sure no one read it");
    }
    return read_token(state_dir, file);
  }
  std::string token = random_token();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + path.string());
  const std::string line = token + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw std::system_error(errno, std::generic_category(), "cannot write " + path.string());
  return token;
}

}  // namespace ferry::runtime
