// Observing calls: what bodies write reaches the calling program's terminal and `ferry logs`; f.map draws a
// progress bar on a terminal, and nothing elsewhere.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;

TEST(observe, a_bodys_output_reaches_the_callers_terminal_tagged_with_its_call_and_ferry_logs_keeps_it) {
  ferry_server server;
  const auto r = run({"/proc/self/exe"},
                     {{"E2E_SCENARIO", "logs"}, {"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(r.code, 0) << r.err;
  // stdout lines on the caller's stdout, stderr lines on its stderr (the last one had no newline), each
  // tagged with the function and the call, and before the call returned.
  std::smatch tagged;
  const std::regex out_line(R"(\[shout (fc-[0-9a-f]{16})\] hello from a body\n)");
  ASSERT_TRUE(std::regex_search(r.out, tagged, out_line)) << "stdout:\n" << r.out << "\nstderr:\n" << r.err;
  const std::string call_id = tagged[1];
  EXPECT_LT(r.out.find(call_id), r.out.find("caller done"));
  EXPECT_THAT(r.err, HasSubstr("[shout " + call_id + "] hello from a body (stderr)\n"));

  // The server keeps them after the program has gone: `ferry logs APP [--call ID]`.
  const auto logs = server.cli({"logs", "e2e", "--call", call_id});
  ASSERT_EQ(logs.code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("shout " + call_id + " | hello from a body\n"));
  EXPECT_THAT(logs.out, HasSubstr("shout " + call_id + " !| hello from a body (stderr)\n"));
  const auto other_call = server.cli({"logs", "e2e", "--call", "fc-0000000000000000"});
  EXPECT_EQ(other_call.out, "");
  EXPECT_EQ(server.cli({"logs", "no-such-app"}).out, "");
}

TEST(observe, ferry_logs_follow_prints_new_lines_as_they_are_written) {
  ferry_server server;
  auto say = [&](const std::string& text) {
    const auto r = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "logs"},
                                            {"E2E_TEXT", text},
                                            {"FERRY_SERVER", server.address()},
                                            {"FERRY_TOKEN", server.token()}});
    ASSERT_EQ(r.code, 0) << r.err;
  };
  say("an earlier line");
  process follower(
      {FERRY_CLI_PATH, "logs", "e2e", "-f", "--server", server.address(), "--state-dir", server.state_dir()});
  // The kept lines come first, in the same answer that subscribes the follower: once it has printed the
  // earlier line, a line written now must follow.
  ASSERT_TRUE(follower.wait_for_output("| an earlier line\n")) << follower.out() << follower.err();
  say("a later line");
  EXPECT_TRUE(follower.wait_for_output("| a later line\n")) << follower.out() << follower.err();
}

/// Runs this binary's scenario with its stderr on a terminal (a pseudo-terminal); returns what it wrote there.
std::string run_on_a_terminal(const std::string& scenario, std::string& out) {
  int terminal = -1;
  int out_pipe[2];
  EXPECT_EQ(::pipe(out_pipe), 0);
  const pid_t pid = ::forkpty(&terminal, nullptr, nullptr, nullptr);
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::close(out_pipe[0]);
    ::setenv("E2E_SCENARIO", scenario.c_str(), 1);
    ::execl("/proc/self/exe", "e2e_test", nullptr);
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  std::string written;
  char chunk[4096];
  for (;;) {  // until the child closes the terminal (EIO once it has exited)
    const ssize_t n = ::read(terminal, chunk, sizeof chunk);
    if (n <= 0) break;
    written.append(chunk, static_cast<std::size_t>(n));
  }
  for (ssize_t n; (n = ::read(out_pipe[0], chunk, sizeof chunk)) > 0;) out.append(chunk, static_cast<std::size_t>(n));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(terminal);
  ::close(out_pipe[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << written;
  return written;
}

TEST(observe, a_map_draws_a_progress_bar_on_a_terminal_and_nothing_when_stderr_is_not_one) {
  std::string out;
  const std::string terminal = run_on_a_terminal("map_progress", out);
  EXPECT_THAT(out, HasSubstr("sum 22140"));
  EXPECT_THAT(terminal, HasSubstr("square "));
  EXPECT_THAT(terminal, HasSubstr(" 40/40 100% "));  // the finished bar: done/total, percent, rate
  EXPECT_THAT(terminal, testing::ContainsRegex("/s in [0-9]+:[0-9][0-9]"));

  const auto piped = run({"/proc/self/exe"}, {{"E2E_SCENARIO", "map_progress"}});
  ASSERT_EQ(piped.code, 0) << piped.err;
  EXPECT_THAT(piped.out, HasSubstr("sum 22140"));
  EXPECT_THAT(piped.err, Not(HasSubstr("40/40")));
}

/// The lines a terminal shows for `written`: each line's text after its last carriage return, without
/// "erase to the end of the line" sequences.
std::vector<std::string> visible_lines(const std::string& written) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < written.size()) {
    const auto end = std::min(written.find('\n', start), written.size());
    std::string line = written.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (const auto cr = line.rfind('\r'); cr != std::string::npos) line = line.substr(cr + 1);
    for (auto erase = line.find("\x1b[K"); erase != std::string::npos; erase = line.find("\x1b[K"))
      line.erase(erase, 3);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

TEST(observe, lines_printed_during_a_map_never_share_the_bars_line_and_repeated_warnings_are_summed_up) {
  std::string out;
  const std::string terminal = run_on_a_terminal("map_outcomes", out);
  EXPECT_THAT(out, HasSubstr("failed 20"));
  std::size_t bodies = 0, lost = 0, summaries = 0;
  for (const auto& line : visible_lines(terminal)) {
    const bool bar = line.find("/40 ") != std::string::npos;
    const bool printed = line.find("[flaky_square ") != std::string::npos || line.find("[ferry ") != std::string::npos;
    EXPECT_FALSE(bar && printed) << "a line and the bar share a line: " << line;
    bodies += line.find("] squaring ") != std::string::npos;
    lost += line.find("with 1 input in flight") != std::string::npos;
    summaries += line.find("more containers of e2e.flaky_square ended unasked") != std::string::npos;
  }
  EXPECT_EQ(bodies, 40u);                // what the bodies wrote is all there, each on a line of its own
  EXPECT_EQ(lost, 1u) << terminal;       // the first lost container is told; the other nine are summed up
  EXPECT_GE(summaries, 1u) << terminal;  // (one per 5 s while they go on)
}

}  // namespace
}  // namespace e2e
