// Runs a short command (sbatch, squeue, scancel) without blocking the server's thread: its output is
// collected through pipes and its exit watched through a pidfd, on the server's executor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace ferry::server {

struct command_result {
  int exit_code = -1;  // -1: it could not be started, or was killed (signal, or the timeout)
  std::string out;
  std::string err;  // or why it could not be started, or that it timed out
};

/// Starts argv[0] (looked up in PATH) with `argv` and the server's environment, stdin from /dev/null, and
/// calls `done` on `executor` once it has exited and its output is read. A command still running after
/// `timeout` is killed (a hung sbatch must not hang the server's capacity requests).
void run_command(boost::asio::any_io_executor executor, std::vector<std::string> argv,
                 std::chrono::milliseconds timeout, std::function<void(const command_result&)> done);

}  // namespace ferry::server
