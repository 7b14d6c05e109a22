// A child process for end-to-end tests: started with pipes on stdout and stderr that a thread drains
// into memory, so tests can wait for a line to appear (with a deadline) instead of sleeping.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace e2e {

using namespace std::chrono_literals;

class process {
 public:
  /// Starts argv[0] with `env` added to (or overriding) this process's environment.
  explicit process(std::vector<std::string> argv, std::map<std::string, std::string> env = {});
  ~process();  // kills the process if it still runs
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  pid_t pid() const { return pid_; }
  /// Waits until stdout+stderr contain `text`; returns false at the deadline or when the process exited without it.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds deadline = 30s);
  /// Waits for the exit code (128+signal when killed); nullopt at the deadline.
  std::optional<int> wait(std::chrono::milliseconds deadline = 60s);
  void signal(int sig);
  std::string out() const;
  std::string err() const;

 private:
  void drain();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string out_, err_;        // guarded by mu_
  bool streams_closed_ = false;  // guarded by mu_
  std::optional<int> exit_code_;
};

/// A fresh directory under the system's temporary directory, for files that bodies and tests share.
std::string scratch_dir();

/// A TCP port free on every address now (bound for a moment, never listened on, then closed): for a server
/// told in advance where others reach it, or an address nobody answers at.
std::string free_port();

/// Runs a command to completion and returns {exit code, stdout, stderr}.
struct run_result {
  int code;
  std::string out;
  std::string err;
};
run_result run(std::vector<std::string> argv, std::map<std::string, std::string> env = {});

/// A `ferry server` on a free port with its own state directory, stopped (SIGTERM) when destroyed.
class ferry_server {
 public:
  /// On a free port, unless `extra_args` give `--port P`. `command_prefix` runs the server under another
  /// command (`prlimit --nofile=64:64`, say).
  explicit ferry_server(std::vector<std::string> extra_args = {}, std::vector<std::string> command_prefix = {});
  ~ferry_server();
  const std::string& address() const { return address_; }
  const std::string& state_dir() const { return state_dir_; }
  std::string token() const;
  /// Whether process `pid` is one this server started: its child, or the child of one of its agents
  /// (`ferry agent --server ADDRESS` on this host). Tests signal only such processes.
  bool started(pid_t pid) const;
  process& proc() { return *proc_; }
  /// kill -9, then starts it again on the same port and state directory.
  void kill_and_restart();
  /// Runs `ferry ARGS... --server ADDRESS --state-dir DIR` against this server, to completion.
  run_result cli(std::vector<std::string> args) const;
  /// GET `path` from the server's HTTP API with its token; returns the body. Throws unless the reply is 200.
  std::string http_get(const std::string& path) const;
  /// Any request to the HTTP API with the token: the reply's status and body.
  struct http_reply {
    int status = 0;
    std::string body;
  };
  http_reply http(const std::string& method, const std::string& path, const std::string& body = "") const;
  /// One container as GET /v1/containers reports it.
  struct container_row {
    std::uint64_t id = 0;
    std::string app, function, state;
    int inputs = 0;
    pid_t pid = -1;
    std::uint64_t rss_bytes = 0;
  };
  /// The server's containers (GET /v1/containers), optionally only those of `function`.
  std::vector<container_row> containers(const std::string& function = "") const;
  /// The value of the sample `series` (e.g. `ferry_calls_total{app="a",function="f",outcome="ok"}`) in
  /// GET /metrics; 0 when the server has no such sample yet.
  double metric(const std::string& series) const;

 private:
  void start(const std::string& port);
  std::vector<std::string> extra_args_;
  std::vector<std::string> command_prefix_;
  std::string state_dir_;
  std::string address_;
  std::unique_ptr<process> proc_;
};

/// What /proc says about a live process: resident memory and open file descriptors.
struct process_sample {
  long rss_kib = 0;
  int fds = 0;
};
/// nullopt when the process is gone (or cannot be read).
std::optional<process_sample> sample_process(pid_t pid);
/// The parent of `pid` per /proc/PID/stat; -1 when it is gone.
pid_t parent_of(pid_t pid);
/// Waits until every thread of `pid` is stopped (state T in /proc/PID/task/*/stat). kill(SIGSTOP) returns
/// before the threads stop: each stops when it next enters the kernel, so one running a body may still
/// finish it. False after `limit`, or when the process is gone.
bool wait_until_stopped(pid_t pid, std::chrono::milliseconds limit);

/// Sets environment variables for the life of the object (restoring the old values after).
class scoped_env {
 public:
  scoped_env(std::map<std::string, std::string> vars);
  ~scoped_env();

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

/// A server with this test binary deployed on it as `app`, and the environment that points programs at
/// it (FERRY_SERVER, FERRY_TOKEN). Throws when the deploy fails.
struct deployed_server {
  explicit deployed_server(const std::string& app = "platform");
  ferry_server server;
  scoped_env env;
};

}  // namespace e2e
