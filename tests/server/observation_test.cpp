// Observation's rules, driven without sockets or processes: how containers' output becomes lines attributed
// to calls, what is kept of stderr for crash reports, how repeating warnings are summed up (on a fake clock),
// what the history and metrics record of an ended call, and who receives which events.
#include "server/observation.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "scheduler_fakes.hpp"

namespace ferry::server {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using testing::fake_clock;
using ::testing::HasSubstr;
using wire::status;

/// A line as the host was asked to show it, with the call it was attributed to ("" for none).
struct shown {
  std::string call_id;
  std::string text;
  bool operator==(const shown&) const = default;
};

class observation_test : public ::testing::Test, public observation::host {
 protected:
  observation_test() {
    app.name = "app";
    fn.app = &app;
    fn.name = "f";
    container.id = container_id{7};
    container.function = &fn;
    for (int i = 0; i < 2; ++i) {
      calls[i].id = graph_id{static_cast<std::uint64_t>(i + 1)};
      calls[i].call_id = "fc-" + std::to_string(i + 1);
      calls[i].function = &fn;
    }
  }

  void show(const call_record* call, const app_instance& a, const log_entry& line) override {
    EXPECT_EQ(&a, &app);
    lines.push_back({call ? call->call_id : "", line.text});
  }

  /// Attempt `attempt` of calls[i] runs in the container.
  void running(std::uint64_t attempt, int i) { container.in_flight.emplace(attempt_id{attempt}, &calls[i]); }
  void write(int stream, std::string_view chunk) { obs.output(container, stream, chunk); }
  /// What a body writes through std::cout while attempt `attempt` runs: the line names the attempt.
  static std::string tagged(std::uint64_t attempt, const std::string& text) {
    return wire::log_tag + std::to_string(attempt) + wire::log_tag + text + "\n";
  }

  app_instance app;
  function_state fn;
  container_record container;
  call_record calls[2];
  fake_clock time;
  observation obs{*this, time, 1000};
  std::vector<shown> lines;
};

TEST_F(observation_test, a_line_goes_to_the_call_it_names_or_to_the_only_call_running_or_to_none) {
  running(11, 0);
  running(12, 1);
  write(1, tagged(12, "from the second") + tagged(11, "from the first"));
  write(1, "untagged, with two calls running\n");
  container.in_flight.erase(attempt_id{12});
  write(2, "untagged, with one call running\n");
  write(1, tagged(99, "an attempt that has ended"));
  EXPECT_THAT(lines,
              ElementsAre(shown{"fc-2", "from the second"}, shown{"fc-1", "from the first"},
                          shown{"", "untagged, with two calls running"},
                          shown{"fc-1", "untagged, with one call running"}, shown{"", "an attempt that has ended"}));
  const auto kept = obs.logs().find("app", "fc-1", 0, 10);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1]->stream, wire::log_stream::stderr_stream);
  EXPECT_EQ(kept[1]->container_id, 7u);
}

TEST_F(observation_test, chunks_are_joined_into_lines_and_the_last_line_counts_when_the_container_exits) {
  write(1, "hel");
  write(1, "lo\nwor");
  write(2, "an error\n");  // streams are joined separately
  write(1, "ld\r\n");      // a CR before the newline is not part of the line
  write(1, "no newline at the end");
  EXPECT_THAT(lines, ElementsAre(shown{"", "hello"}, shown{"", "an error"}, shown{"", "world"}));
  obs.exiting(container);
  EXPECT_EQ(lines.back(), (shown{"", "no newline at the end"}));
}

TEST_F(observation_test, a_line_longer_than_the_limit_is_cut_into_pieces_of_the_limit) {
  write(1, std::string(observation::max_line_length * 2 + 10, 'x'));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].text.size(), observation::max_line_length);
  write(1, "\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2].text, std::string(10, 'x'));
}

TEST_F(observation_test, the_last_stderr_lines_are_kept_for_crash_reports_and_told_apart_by_call) {
  running(11, 0);
  running(12, 1);
  for (int i = 0; i < 40; ++i) write(2, tagged(11 + i % 2, "line " + std::to_string(i)));
  write(2, "a line of no call\n");
  EXPECT_EQ(container.recent_stderr.size(), container_record::recent_stderr_lines);
  const std::string first = container.stderr_of("fc-1");
  EXPECT_THAT(first, HasSubstr("line 38\n"));
  EXPECT_THAT(first, ::testing::Not(HasSubstr("line 39")));   // the second call's
  EXPECT_THAT(first, HasSubstr("a line of no call"));         // what a crash writes belongs to every call
  EXPECT_THAT(first, ::testing::Not(HasSubstr("line 8\n")));  // older than the last 30 lines
}

TEST_F(observation_test, a_warning_repeated_within_its_window_is_logged_once_then_summed_up) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  obs.warn_repeating("crash", "container 1 crashed", "containers crashed");
  obs.warn_repeating("crash", "container 2 crashed", "containers crashed");
  obs.warn_repeating("crash", "container 3 crashed", "containers crashed");
  obs.warn_repeating("other", "something else", "other things");
  time.advance(observation::warning_window - 1ms);
  EXPECT_THAT(sink->last_formatted(), ElementsAre(HasSubstr("container 1 crashed"), HasSubstr("something else")));
  time.advance(1ms);
  EXPECT_THAT(sink->last_formatted(), ElementsAre(HasSubstr("container 1 crashed"), HasSubstr("something else"),
                                                  HasSubstr("2 more containers crashed in the last 5 s")));
  time.advance(observation::warning_window);  // a quiet window closes it
  obs.warn_repeating("crash", "container 4 crashed", "containers crashed");
  obs.warn_repeating("crash", "container 5 crashed", "containers crashed");
  obs.flush_repeating_warnings();  // the server stops: what was counted is told
  EXPECT_THAT(sink->last_formatted(3),
              ElementsAre(HasSubstr("2 more containers crashed in the last 5 s"), HasSubstr("container 4 crashed"),
                          HasSubstr("1 more containers crashed")));
  spdlog::set_default_logger(previous);
}

TEST_F(observation_test, an_ended_call_joins_the_history_and_the_metrics_and_a_tail_call_is_counted_once) {
  fn.metrics = &obs.metrics().of("app", "f");
  call_record& done = calls[0];
  done.state = call_state::done;
  done.outcome = status::ok;
  done.created = time.now();
  time.advance(3ms);
  obs.record_end(done);
  const call_summary* summary = obs.history().find("fc-1");
  ASSERT_NE(summary, nullptr);
  EXPECT_EQ(summary->state, "succeeded");
  EXPECT_EQ(fn.metrics->calls_by_outcome[0], 1u);
  EXPECT_NEAR(fn.metrics->duration_sum, 0.003, 1e-9);
  obs.record_end(calls[1], "fc-9");  // handed its result over: the call it handed over to is counted
  ASSERT_NE(obs.history().find("fc-2"), nullptr);
  EXPECT_EQ(obs.history().find("fc-2")->state, "tail_called");
  EXPECT_EQ(obs.history().find("fc-2")->tail_call, "fc-9");
  EXPECT_EQ(fn.metrics->calls_by_outcome[0], 1u);
  EXPECT_THAT(obs.metrics().render(""), HasSubstr("ferry_calls_total{app=\"app\",function=\"f\",outcome=\"ok\"} 1"));
}

TEST_F(observation_test, subscribers_get_the_events_of_their_app_and_call_until_their_session_ends) {
  std::vector<std::string> of_call, of_app;
  obs.subscribe({"app", "fc-2", session_id{5}, [&](const server_event& e) { of_call.push_back(e.call_id); }});
  const auto id = obs.subscribe({"app", "", session_id{}, [&](const server_event& e) { of_app.push_back(e.call_id); }});
  obs.subscribe({"other", "", session_id{}, [&](const server_event&) { ADD_FAILURE() << "another app's event"; }});
  running(11, 0);
  running(12, 1);
  write(1, tagged(11, "a") + tagged(12, "b"));
  obs.progress(calls[1], 1, 2, "half");
  EXPECT_THAT(of_call, ElementsAre("fc-2", "fc-2"));
  EXPECT_THAT(of_app, ElementsAre("fc-1", "fc-2", "fc-2"));
  ASSERT_NE(calls[1].progress, nullptr);
  EXPECT_EQ(calls[1].progress->message, "half");
  obs.unsubscribe_session(session_id{5});
  obs.unsubscribe(id);
  write(1, tagged(12, "c"));
  EXPECT_EQ(of_call.size(), 2u);
  EXPECT_EQ(of_app.size(), 3u);
}

}  // namespace
}  // namespace ferry::server
