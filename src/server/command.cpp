#include "server/command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <memory>
#include <system_error>

#include "base/exec_array.hpp"
#include "server/pidfd.hpp"

extern char** environ;

namespace ferry::server {

namespace asio = boost::asio;

namespace {

/// One running command: two pipes and a pidfd, read until all three report the end.
struct running_command : std::enable_shared_from_this<running_command> {
  running_command(asio::any_io_executor executor, pid_t pid, int pidfd, int out_fd, int err_fd,
                  std::chrono::milliseconds timeout, std::function<void(const command_result&)> done)
      : pid(pid),
        exit_watch(executor, pidfd),
        pipes{{executor, out_fd}, {executor, err_fd}},
        deadline(executor, timeout),
        done(std::move(done)) {}

  void start() {
    for (int i = 0; i < 2; ++i) read(i);
    exit_watch.async_wait(asio::posix::descriptor_base::wait_read,
                          [self = shared_from_this()](boost::system::error_code ec) {
                            if (ec) return;
                            int status = 0;
                            ::waitpid(self->pid, &status, 0);
                            self->result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                            self->exited = true;
                            self->deadline.cancel();
                            self->finish_if_done();
                          });
    deadline.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->exited) return;
      self->timed_out = true;
      ::kill(self->pid, SIGKILL);
    });
  }

  void read(int i) {
    pipes[i].async_read_some(asio::buffer(chunk[i]),
                             [self = shared_from_this(), i](boost::system::error_code ec, std::size_t n) {
                               (i == 0 ? self->result.out : self->result.err).append(self->chunk[i].data(), n);
                               if (ec) {
                                 self->closed[i] = true;
                                 return self->finish_if_done();
                               }
                               self->read(i);
                             });
  }

  void finish_if_done() {
    if (!exited || !closed[0] || !closed[1] || !done) return;
    if (timed_out) result.err += "(killed: it did not finish in time)";
    auto handler = std::move(done);
    handler(result);
  }

  pid_t pid;
  asio::posix::stream_descriptor exit_watch;
  asio::posix::stream_descriptor pipes[2];
  asio::steady_timer deadline;
  std::array<std::array<char, 4096>, 2> chunk{};
  bool closed[2] = {false, false};
  bool exited = false;
  bool timed_out = false;
  command_result result;
  std::function<void(const command_result&)> done;
};

}  // namespace

void run_command(asio::any_io_executor executor, std::vector<std::string> argv, std::chrono::milliseconds timeout,
                 std::function<void(const command_result&)> done) {
  auto fail = [&](const std::string& why) {
    asio::post(executor, [done = std::move(done), why] { done(command_result{-1, "", why}); });
  };
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail("pipe2: " + std::generic_category().message(errno));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(out[0]);
    ::close(out[1]);
    return fail("pipe2: " + std::generic_category().message(e));
  }
  const std::vector<char*> args = exec_array(argv);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  pid_t pid = 0;
  const int spawn_error = ::posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(err[1]);
  if (spawn_error != 0) {
    ::close(out[0]);
    ::close(err[0]);
    return fail("cannot run " + argv[0] + ": " + std::generic_category().message(spawn_error));
  }
  const int pidfd = open_pidfd(pid);
  if (pidfd < 0) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    ::close(err[0]);
    return fail("pidfd_open: " + std::generic_category().message(e));
  }
  std::make_shared<running_command>(executor, pid, pidfd, out[0], err[0], timeout, std::move(done))->start();
}

}  // namespace ferry::server
