#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "base/exec_array.hpp"
#include "server/container_launcher.hpp"
#include "server/pidfd.hpp"

extern char** environ;

namespace ferry::server {

namespace asio = boost::asio;

namespace {

/// The descriptor on which a container marks that it has reached app.main (FERRY_MAIN_FD).
constexpr int main_fd_in_container = 3;

container_exit describe_exit(int status) {
  if (WIFEXITED(status)) return {"exited with code " + std::to_string(WEXITSTATUS(status))};
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return {"was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : ""), sig};
  }
  return {"ended with status " + std::to_string(status)};
}

class process final : public container_process, public std::enable_shared_from_this<process> {
 public:
  process(asio::any_io_executor executor, pid_t pid, int pidfd, int stdout_fd, int stderr_fd, int main_fd)
      : pid_(pid),
        exit_watch_(executor, pidfd),
        pipes_{{executor, stdout_fd}, {executor, stderr_fd}},
        main_fd_(main_fd) {
    for (auto& p : pipes_) p.non_blocking(true);
  }
  ~process() override {
    if (main_fd_ >= 0) ::close(main_fd_);
  }

  bool reached_main() override {
    if (!reached_main_ && main_fd_ >= 0) {
      char mark = 0;
      reached_main_ = ::read(main_fd_, &mark, 1) == 1;  // (non-blocking: the mark is there or not)
    }
    return reached_main_;
  }

  std::int64_t pid() const override { return pid_; }
  void terminate() override {
    if (!exited_) ::kill(pid_, SIGTERM);
  }
  void kill() override {
    if (!exited_) ::kill(pid_, SIGKILL);
  }
  std::uint64_t rss_bytes() const override {
    if (exited_) return 0;
    // /proc/PID/statm: size resident ... in pages.
    std::ifstream statm("/proc/" + std::to_string(pid_) + "/statm");
    std::uint64_t size = 0, resident = 0;
    if (!(statm >> size >> resident)) return 0;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  void drain_output() override {
    for (int stream = 0; stream < 2; ++stream) read_available(stream);
  }

  void watch(container_launcher::exit_handler on_exit, container_launcher::output_handler on_output) {
    on_exit_ = std::move(on_exit);
    on_output_ = std::move(on_output);
    for (int stream = 0; stream < 2; ++stream) wait_for_output(stream);
    exit_watch_.async_wait(asio::posix::descriptor_base::wait_read,
                           [self = shared_from_this()](boost::system::error_code ec) {
                             if (ec) return;  // cancelled: the server is being destroyed
                             self->reap();
                           });
  }

  void detach() {
    on_exit_ = nullptr;
    on_output_ = nullptr;
    boost::system::error_code ec;
    exit_watch_.cancel(ec);
    for (auto& p : pipes_) p.cancel(ec);
  }

 private:
  void wait_for_output(int stream) {
    pipes_[stream].async_wait(asio::posix::descriptor_base::wait_read,
                              [self = shared_from_this(), stream](boost::system::error_code ec) {
                                if (ec) return;
                                if (self->read_available(stream)) self->wait_for_output(stream);
                              });
  }

  /// Reads what the pipe holds now without blocking; false once the container has closed it.
  bool read_available(int stream) {
    for (;;) {
      const ssize_t n = ::read(pipes_[stream].native_handle(), chunk_.data(), chunk_.size());
      if (n > 0) {
        take(stream, chunk_.data(), static_cast<std::size_t>(n));
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EINTR);
    }
  }

  void take(int stream, const char* data, std::size_t n) {
    if (on_output_) on_output_(stream + 1, std::string_view(data, n));
  }

  void reap() {
    int status = 0;
    // Someone else may have reaped it (a program that waits for all its children): say so, not "code 0".
    const bool reaped = ::waitpid(pid_, &status, WNOHANG) == pid_;
    exited_ = true;
    // The process is gone, so what it wrote is in the pipes: read it all before reporting the exit.
    drain_output();
    boost::system::error_code ec;
    for (auto& p : pipes_) p.cancel(ec);
    if (auto handler = std::move(on_exit_))
      handler(reaped ? describe_exit(status) : container_exit{"exited (its exit status was collected elsewhere)"});
  }

  pid_t pid_;
  bool exited_ = false;
  asio::posix::stream_descriptor exit_watch_;
  asio::posix::stream_descriptor pipes_[2];  // the container's stdout and stderr
  std::array<char, 4096> chunk_{};
  int main_fd_;  // the read end of the pipe the container marks when it reaches app.main
  bool reached_main_ = false;
  container_launcher::exit_handler on_exit_;
  container_launcher::output_handler on_output_;
};

/// Owns a process for the server; detaches its watchers when the server lets go of it.
class process_handle final : public container_process {
 public:
  explicit process_handle(std::shared_ptr<process> p) : p_(std::move(p)) {}
  ~process_handle() override { p_->detach(); }
  std::int64_t pid() const override { return p_->pid(); }
  void terminate() override { p_->terminate(); }
  void kill() override { p_->kill(); }
  void drain_output() override { p_->drain_output(); }
  std::uint64_t rss_bytes() const override { return p_->rss_bytes(); }
  bool reached_main() override { return p_->reached_main(); }

 private:
  std::shared_ptr<process> p_;
};

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

class process_launcher final : public container_launcher {
 public:
  explicit process_launcher(asio::any_io_executor executor) : executor_(std::move(executor)) {}

  std::unique_ptr<container_process> launch(const container_spec& spec, exit_handler on_exit,
                                            output_handler on_output) override {
    int out_fds[2], err_fds[2];
    if (::pipe2(out_fds, O_CLOEXEC) != 0) throw_errno(errno, "pipe2");
    if (::pipe2(err_fds, O_CLOEXEC) != 0) {
      const int err = errno;
      ::close(out_fds[0]);
      ::close(out_fds[1]);
      throw_errno(err, "pipe2");
    }
    int main_fds[2];
    if (::pipe2(main_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      const int err = errno;
      for (int fd : {out_fds[0], out_fds[1], err_fds[0], err_fds[1]}) ::close(fd);
      throw_errno(err, "pipe2");
    }
    auto close_read_ends = [&] {
      ::close(out_fds[0]);
      ::close(err_fds[0]);
      ::close(main_fds[0]);
    };

    std::vector<std::string> env_storage;
    // The server's own settings stay with it, but for those meant for containers too.
    auto overridden = [&spec](std::string_view entry) {
      const std::string_view key = entry.substr(0, entry.find('=') + 1);
      return std::any_of(spec.environment.begin(), spec.environment.end(),
                         [key](const std::string& e) { return e.starts_with(key); });
    };
    for (char** e = environ; *e; ++e) {
      const std::string_view entry(*e);
      if ((!entry.starts_with("FERRY_") || entry.starts_with("FERRY_FULL_STACKS=") ||
           entry.starts_with("FERRY_LOG_LEVEL=")) &&
          !overridden(entry)) {
        env_storage.emplace_back(entry);
      }
    }
    env_storage.insert(env_storage.end(), spec.environment.begin(), spec.environment.end());
    env_storage.push_back("FERRY_CONTAINER_ID=" + std::to_string(number(spec.id)));
    env_storage.push_back("FERRY_SERVER=" + spec.server_address);
    env_storage.push_back("FERRY_TOKEN=" + spec.credential);
    if (!spec.server_cert.empty()) env_storage.push_back("FERRY_SERVER_CERT=" + spec.server_cert);
    env_storage.push_back("FERRY_APP=" + spec.app);
    env_storage.push_back("FERRY_FUNCTION=" + spec.function);
    env_storage.push_back("FERRY_PARENT_PID=" + std::to_string(::getpid()));
    env_storage.push_back("FERRY_MAIN_FD=" + std::to_string(main_fd_in_container));
    const std::vector<char*> envp = exec_array(env_storage);
    std::vector<std::string> arguments{spec.executable};
    arguments.insert(arguments.end(), spec.arguments.begin(), spec.arguments.end());
    const std::vector<char*> argv = exec_array(arguments);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_fds[1], STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&actions, main_fds[1], main_fd_in_container);
    // The server's sockets must not leak into containers: a container holding a client's socket would
    // keep that connection open after the client dies.
    posix_spawn_file_actions_addclosefrom_np(&actions, main_fd_in_container + 1);
    // Nor the signal mask or ignored signals of whichever thread starts them (a program that embeds the
    // server may block signals in its threads): a container starts with none blocked, and SIGINT and
    // SIGTERM, by which it is stopped, at their defaults.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, stop_signals;
    sigemptyset(&none);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &stop_signals);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, spec.executable.c_str(), &actions, &attributes, argv.data(), envp.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out_fds[1]);
    ::close(err_fds[1]);
    ::close(main_fds[1]);
    if (err != 0) {
      close_read_ends();
      throw_errno(err, "cannot start " + spec.executable);
    }
    const int pidfd = open_pidfd(pid);
    if (pidfd < 0) {
      const int open_err = errno;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      close_read_ends();
      throw_errno(open_err, "pidfd_open");
    }
    auto p = std::make_shared<process>(executor_, pid, pidfd, out_fds[0], err_fds[0], main_fds[0]);
    p->watch(std::move(on_exit), std::move(on_output));
    return std::make_unique<process_handle>(std::move(p));
  }

 private:
  asio::any_io_executor executor_;
};

}  // namespace

bool container_exit::killed_from_outside() const {
  switch (signal) {
    case SIGKILL:
    case SIGTERM:
    case SIGINT:
    case SIGHUP:
    case SIGQUIT:
    case SIGPIPE:
    case SIGUSR1:
    case SIGUSR2:
      return true;
    default:
      return false;
  }
}

std::unique_ptr<container_launcher> make_process_launcher(asio::any_io_executor executor) {
  return std::make_unique<process_launcher>(std::move(executor));
}

}  // namespace ferry::server
