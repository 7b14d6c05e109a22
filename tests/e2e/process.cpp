#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace e2e {

process::process(std::vector<std::string> argv, std::map<std::string, std::string> env) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    if (!env.contains(key)) env_storage.push_back(entry);
  }
  for (const auto& [k, v] : env) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  const int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  reader_ = std::thread([this] { drain(); });
}

process::~process() {
  if (!exit_code_) {
    ::kill(pid_, SIGKILL);
    wait(10s);
  }
  if (reader_.joinable()) reader_.join();
  ::close(out_fd_);
  ::close(err_fd_);
}

void process::drain() {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int open_streams = 2;
  char chunk[4096];
  while (open_streams > 0) {
    if (::poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, chunk, sizeof chunk);
      if (n <= 0) {
        fds[i].fd = -1;
        --open_streams;
        continue;
      }
      std::lock_guard lock(mu_);
      (i == 0 ? out_ : err_).append(chunk, static_cast<std::size_t>(n));
      changed_.notify_all();
    }
  }
  std::lock_guard lock(mu_);
  streams_closed_ = true;
  changed_.notify_all();
}

bool process::wait_for_output(const std::string& text, std::chrono::milliseconds deadline) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, deadline, [&] {
    return out_.find(text) != std::string::npos || err_.find(text) != std::string::npos || streams_closed_;
  }) && (out_.find(text) != std::string::npos || err_.find(text) != std::string::npos);
}

std::optional<int> process::wait(std::chrono::milliseconds deadline) {
  if (exit_code_) return exit_code_;
  // An exit cannot be awaited with a deadline portably, but the output streams closing can: once they
  // have, the process (and every child holding them) is ending, and waitpid returns promptly.
  {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, deadline, [&] { return streams_closed_; })) return std::nullopt;
  }
  int status = 0;
  if (::waitpid(pid_, &status, 0) != pid_) return std::nullopt;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

void process::signal(int sig) { ::kill(pid_, sig); }

std::string process::out() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string process::err() const {
  std::lock_guard lock(mu_);
  return err_;
}

run_result run(std::vector<std::string> argv, std::map<std::string, std::string> env) {
  process p(std::move(argv), std::move(env));
  const auto code = p.wait();
  return {code.value_or(-1), p.out(), p.err()};
}

std::string scratch_dir() {
  std::string templ = (std::filesystem::temp_directory_path() / "ferry-e2e-XXXXXX").string();
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
  return templ;
}

std::string free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t length = sizeof sa;
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &length) == 0;
  ::close(fd);
  return bound ? std::to_string(ntohs(sa.sin_port)) : "0";
}

ferry_server::ferry_server(std::vector<std::string> extra_args, std::vector<std::string> command_prefix)
    : extra_args_(std::move(extra_args)), command_prefix_(std::move(command_prefix)) {
  char dir_template[] = "/tmp/ferry-e2e-XXXXXX";
  if (!::mkdtemp(dir_template)) throw std::runtime_error("mkdtemp");
  state_dir_ = dir_template;
  // On a free port, unless told one (`--port P`: a server that must know its port to advertise it).
  std::string port = "0";
  if (auto at = std::find(extra_args_.begin(), extra_args_.end(), "--port");
      at != extra_args_.end() && at + 1 != extra_args_.end()) {
    port = *(at + 1);
    extra_args_.erase(at, at + 2);
  }
  start(port);
}

void ferry_server::kill_and_restart() {
  proc_->signal(SIGKILL);
  proc_->wait(30s);
  start(address_.substr(address_.rfind(':') + 1));
}

void ferry_server::start(const std::string& port) {
  std::vector<std::string> argv = command_prefix_;
  argv.insert(argv.end(), {FERRY_CLI_PATH, "server", "--port", port, "--state-dir", state_dir_});
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  // The suite's core run on a Slurm cluster (tests/cluster/e2e_core_on_slurm_test.sh) gives every server
  // its agents this way.
  if (const char* more = std::getenv("E2E_SERVER_ARGS")) {
    std::istringstream words(more);
    for (std::string word; words >> word;) argv.push_back(word);
  }
  proc_ = std::make_unique<process>(argv, std::map<std::string, std::string>{{"FERRY_LOG_LEVEL", "info"}});
  if (!proc_->wait_for_output(" listening on ")) {
    throw std::runtime_error("ferry server did not start: " + proc_->err());
  }
  std::smatch m;
  const std::string err = proc_->err();
  if (!std::regex_search(err, m, std::regex(R"( listening on (\S+))")))
    throw std::runtime_error("no address in: " + err);
  address_ = m[1];
}

ferry_server::~ferry_server() {
  proc_->signal(SIGTERM);
  proc_->wait(30s);
  proc_.reset();
  std::error_code ec;
  std::filesystem::remove_all(state_dir_, ec);
}

std::string ferry_server::token() const {
  std::ifstream in(state_dir_ + "/token");
  std::string t;
  std::getline(in, t);
  return t;
}

scoped_env::scoped_env(std::map<std::string, std::string> vars) {
  for (const auto& [k, v] : vars) {
    const char* old = std::getenv(k.c_str());
    saved_[k] = old ? std::optional<std::string>(old) : std::nullopt;
    ::setenv(k.c_str(), v.c_str(), 1);
  }
}

scoped_env::~scoped_env() {
  for (const auto& [k, v] : saved_) {
    if (v) {
      ::setenv(k.c_str(), v->c_str(), 1);
    } else {
      ::unsetenv(k.c_str());
    }
  }
}

run_result ferry_server::cli(std::vector<std::string> args) const {
  std::vector<std::string> argv = {FERRY_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--server", address_, "--state-dir", state_dir_});
  return run(argv);
}

}  // namespace e2e

namespace e2e {

std::string ferry_server::http_get(const std::string& path) const {
  auto [status, body] = http("GET", path);
  if (status != 200)
    throw std::runtime_error("GET " + path + ": " + std::to_string(status) + " " + body.substr(0, 200));
  return body;
}

ferry_server::http_reply ferry_server::http(const std::string& method, const std::string& path,
                                            const std::string& body) const {
  const auto colon = address_.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address_.substr(colon + 1))));
  ::inet_pton(AF_INET, address_.substr(0, colon).c_str(), &sa.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket");
  timeval tv{30, 0};  // a server that stops answering fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string reply;
  try {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("connect");
    const std::string request = method + " " + path + " HTTP/1.1\r\nHost: " + address_ + "\r\nAuthorization: Bearer " +
                                token() + "\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\nConnection: close\r\n\r\n" + body;
    for (std::size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send");
      sent += static_cast<std::size_t>(n);
    }
    char chunk[16384];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n < 0) throw std::runtime_error("read from the server timed out or failed");
      if (n == 0) break;
      reply.append(chunk, static_cast<std::size_t>(n));
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (reply.rfind("HTTP/1.1 ", 0) != 0) throw std::runtime_error(method + " " + path + ": " + reply.substr(0, 200));
  const int status = std::atoi(reply.c_str() + 9);
  const auto head_end = reply.find("\r\n\r\n");
  if (head_end == std::string::npos) throw std::runtime_error(method + " " + path + ": no body");
  std::string text = reply.substr(head_end + 4);
  if (reply.substr(0, head_end).find("Transfer-Encoding: chunked") != std::string::npos) {  // undo chunking
    std::string plain;
    std::size_t at = 0;
    for (;;) {
      const auto eol = text.find("\r\n", at);
      if (eol == std::string::npos) break;
      const std::size_t size = std::stoul(text.substr(at, eol - at), nullptr, 16);
      if (size == 0) break;
      plain.append(text, eol + 2, size);
      at = eol + 2 + size + 2;
    }
    text = std::move(plain);
  }
  return {status, std::move(text)};
}

std::vector<ferry_server::container_row> ferry_server::containers(const std::string& function) const {
  const auto doc = boost::json::parse(http_get("/v1/containers"));
  std::vector<container_row> rows;
  for (const auto& c : doc.at("containers").as_array()) {
    container_row row;
    row.id = c.at("id").to_number<std::uint64_t>();
    row.app = c.at("app").as_string().c_str();
    row.function = c.at("function").as_string().c_str();
    row.state = c.at("state").as_string().c_str();
    row.inputs = c.at("inputs").to_number<int>();
    row.pid = c.at("pid").to_number<pid_t>();
    row.rss_bytes = c.at("rss_bytes").to_number<std::uint64_t>();
    if (function.empty() || row.function == function) rows.push_back(std::move(row));
  }
  return rows;
}

double ferry_server::metric(const std::string& series) const {
  std::istringstream lines(http_get("/metrics"));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return 0;
}

std::optional<process_sample> sample_process(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream status(dir + "/status");
  if (!status) return std::nullopt;
  process_sample s;
  std::string line;
  bool found = false;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream(line.substr(6)) >> s.rss_kib;
      found = true;
    }
  }
  if (!found) return std::nullopt;  // a zombie has no VmRSS line
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++s.fds;
  }
  if (ec) return std::nullopt;
  return s;
}

namespace {
/// State letter and parent of the task whose stat file is `path` ("/proc/PID/stat" or
/// "/proc/PID/task/TID/stat"); nullopt when it is gone.
std::optional<std::pair<char, pid_t>> read_stat(const std::string& path) {
  std::ifstream stat(path);
  std::string all;
  if (!std::getline(stat, all)) return std::nullopt;
  // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so parse after the last ')'.
  const auto close = all.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(all.substr(close + 1));
  char state = '?';
  pid_t ppid = -1;
  if (!(rest >> state >> ppid)) return std::nullopt;
  return std::pair{state, ppid};
}
}  // namespace

bool ferry_server::started(pid_t pid) const {
  const pid_t parent = parent_of(pid);
  if (parent <= 0) return false;
  if (parent == proc_->pid()) return true;
  std::ifstream in("/proc/" + std::to_string(parent) + "/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
  for (std::size_t i = 2; i < argv.size(); ++i) {
    if (argv[1] == "agent" && argv[i - 1] == "--server" && argv[i] == address_) return true;
  }
  return false;
}

pid_t parent_of(pid_t pid) {
  const auto stat = read_stat("/proc/" + std::to_string(pid) + "/stat");
  return stat ? stat->second : -1;
}

bool wait_until_stopped(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true, any = false;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(tasks, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
      const auto stat = read_stat(it->path().string() + "/stat");
      if (!stat) continue;  // a thread that just exited
      any = true;
      all = all && stat->first == 'T';
    }
    if (ec) return false;
    if (any && all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

deployed_server::deployed_server(const std::string& app)
    : env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}}) {
  const auto r = server.cli({"deploy", "--name", app, E2E_BINARY});
  if (r.code != 0 || r.out.find("deployed app '" + app + "'") == std::string::npos) {
    throw std::runtime_error("ferry deploy --name " + app + " failed (exit " + std::to_string(r.code) + "): " + r.err);
  }
}

}  // namespace e2e
