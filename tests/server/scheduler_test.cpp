// The scheduler's rules, driven without time passing, processes starting or sockets: a fake clock the test
// moves, a fake launcher whose containers the test makes exit, and a host that notes what the scheduler asks
// of the server (send this input, cancel that attempt, close this connection). The call graph is the real one.
#include "server/scheduler.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <ferry/codec.hpp>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "scheduler_fakes.hpp"

namespace ferry::server {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using testing::fake_clock;
using testing::fake_launcher;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using wire::status;

constexpr auto cancel_grace = 1s;
constexpr auto stop_grace = 2s;
constexpr auto connect_timeout = 10s;

/// An input the scheduler sent: to which container, as which attempt, of which call.
struct sent_input {
  container_id container;
  attempt_id attempt;
  graph_id call;
};

/// Container `n`, as the tests name containers: by the order they were started in (1, 2, ...).
constexpr container_id container(std::uint64_t n) { return container_id{n}; }

/// How a call ended, as its caller would learn it.
struct call_end {
  status outcome;
  std::string message;  // the error's, for a failure
  int attempts;
};

class scheduler_test : public ::testing::Test, public call_graph::host, public scheduler::host {
 protected:
  scheduler_test() {
    app.name = "app";
    app.executable = "/bin/app";
    fn.app = &app;
    fn.name = "f";
    fn.max_inputs = 1;
    fn.max_containers = 10;
    fn.scaledown_window = 60s;
  }

  // The call graph's host: as the server, ready calls go to the scheduler and ended ones leave it.
  void ready(call_record& c) override { sched.enqueue(c); }
  void ended(call_record& c, call_state was) override {
    sched.ended(c, was);
    ends[c.id] = {c.outcome,
                  c.outcome == status::ok ? "" : wire::decode_error({c.result.data(), c.result.size()}).message,
                  c.attempts};
  }
  void deliver(call_record&) override {}
  void unneeded(call_record&) override {}
  void forgetting(call_record&) override {}
  void emptied() override {}

  // The scheduler's host.
  bool send_input(container_record& c, attempt_id attempt, const call_record& call) override {
    sent.push_back({c.id, attempt, call.id});
    return true;
  }
  void send_cancel(container_record& c, attempt_id attempt) override { cancels.emplace_back(c.id, attempt); }
  void disconnect(container_record& c, const std::string& why) override { disconnects[number(c.id)] = why; }
  void refill(function_state&) override {}
  void output(container_record&, int, std::string_view) override {}
  void exiting(container_record&) override {}
  void exited() override {}
  void unplaced(ferry::server::function_state&, std::size_t) override {}
  void warn_repeating(const std::string&, const std::string& message, const std::string&) override {
    warnings.push_back(message);
  }

  /// A call of `fn` (or `of`) a program makes, ready at once.
  graph_id call(function_state* of = nullptr) {
    auto c = std::make_unique<call_record>();
    c->id = graph_id{next_call++};
    c->call_id = "fc-" + std::to_string(number(c->id));
    c->flags = wire::deliver_result;
    c->function = of ? of : &fn;
    detail::buffer arguments;
    ferry::encode(arguments, std::tuple<std::int64_t>{1});
    c->arguments = wire::payload(std::move(arguments));
    const graph_id id = c->id;
    graph.start_when_ready(graph.add(std::move(c)));  // (which may end it, and forget it)
    return id;
  }
  /// Every started container that has not connected connects now.
  void connect_all() {
    for (const auto& [id, process] : launcher.launched) {
      if (container_record* c = sched.find(container(id)); c && c->state == container_state::starting) {
        sched.connected(container(id), process->spec.credential);
      }
    }
  }
  /// The container answers `input` with `outcome`, as the server handles an output frame.
  void answer(const sent_input& input, status outcome = status::ok) {
    container_record* c = sched.find(input.container);
    ASSERT_NE(c, nullptr);
    const auto a = sched.answered(*c, input.attempt, outcome);
    ASSERT_TRUE(a.known);
    if (a.call && outcome == status::ok) {
      detail::buffer value;
      ferry::encode(value, std::int64_t{2});
      graph.complete(*a.call, status::ok, wire::payload(std::move(value)));
    } else if (a.call) {
      sched.retry_or_fail(*a.call, {outcome, "", "the body threw", fn.name, a.call->call_id, ""});
    }
    sched.dispatch(fn);
  }
  const fake_launcher::process_record& process(std::uint64_t container) { return *launcher.launched.at(container); }
  call_state state_of(graph_id call) { return graph.find(call)->state; }

  app_instance app;
  function_state& fn = app.functions["f"];
  fake_clock time;
  fake_launcher launcher;
  call_graph graph{*this};
  scheduler sched{*this, graph, time, launcher,
                  scheduler_options{cancel_grace, stop_grace, connect_timeout, "127.0.0.1:5555"}};
  std::uint64_t next_call = 1;
  std::vector<sent_input> sent;
  std::vector<std::pair<container_id, attempt_id>> cancels;  // (container, attempt)
  std::map<std::uint64_t, std::string> disconnects;          // by container number
  std::map<graph_id, call_end> ends;                         // by call
  std::vector<std::string> warnings;
};

// --- scaling ---

TEST_F(scheduler_test, queued_calls_start_the_containers_their_slots_need_and_no_more_than_the_maximum) {
  fn.max_inputs = 2;
  fn.max_containers = 3;
  for (int i = 0; i < 5; ++i) call();
  EXPECT_EQ(launcher.launched.size(), 3u);  // ceil(5 / 2)
  for (int i = 0; i < 5; ++i) call();
  EXPECT_EQ(launcher.launched.size(), 3u);  // 10 calls would need 5: the maximum is 3
  const auto& spec = process(1).spec;
  EXPECT_EQ(spec.executable, "/bin/app");
  EXPECT_EQ(spec.function, "f");
  EXPECT_EQ(spec.server_address, "127.0.0.1:5555");
  // Its own credential, made for this launch: 64 hex digits, another for each container.
  EXPECT_EQ(spec.credential.size(), 64u);
  EXPECT_NE(spec.credential, process(2).spec.credential);
}

TEST_F(scheduler_test, a_buffer_starts_spare_containers_only_while_there_is_work) {
  fn.buffer_containers = 2;
  sched.scale(fn);
  EXPECT_TRUE(launcher.launched.empty());
  call();
  EXPECT_EQ(launcher.launched.size(), 3u);  // one for the call, two spare
}

TEST_F(scheduler_test, min_containers_start_with_no_calls_and_outlive_the_scaledown_window) {
  fn.min_containers = 2;
  sched.scale(fn);
  ASSERT_EQ(launcher.launched.size(), 2u);
  connect_all();
  sched.dispatch(fn);
  time.advance(fn.scaledown_window * 3);
  EXPECT_EQ(process(1).terminated + process(2).terminated, 0);
}

TEST_F(scheduler_test, calls_go_to_the_least_loaded_container_and_never_past_max_inputs) {
  fn.max_inputs = 2;
  fn.max_containers = 2;
  for (int i = 0; i < 5; ++i) call();
  EXPECT_TRUE(sent.empty());  // nothing runs before a container connects
  connect_all();
  sched.dispatch(fn);
  ASSERT_EQ(sent.size(), 4u);
  std::map<std::uint64_t, int> per_container;
  for (const auto& s : sent) ++per_container[number(s.container)];
  EXPECT_THAT(per_container,
              ElementsAre(std::pair<const std::uint64_t, int>{1, 2}, std::pair<const std::uint64_t, int>{2, 2}));
  EXPECT_EQ(state_of(graph_id{5}), call_state::queued);
  answer(sent[0]);
  ASSERT_EQ(sent.size(), 5u);  // the freed slot takes the fifth call
  EXPECT_EQ(sent[4].container, sent[0].container);
  EXPECT_EQ(sent[4].call, graph_id{5});
  EXPECT_EQ(ends.at(graph_id{1}).outcome, status::ok);
}

// A full host makes room for a waiting call by stopping another function's idle container: the one idle
// longest, not the one that has just answered (the likeliest to be called again).
TEST_F(scheduler_test, a_full_host_makes_room_by_stopping_the_container_idle_longest) {
  launcher.room = 2;
  function_state& g = app.functions["g"];
  function_state& h = app.functions["h"];
  for (function_state* other : {&g, &h}) {
    other->app = &app;
    other->name = other == &g ? "g" : "h";
    other->max_inputs = 1;
    other->max_containers = 1;
    other->scaledown_window = 60s;
  }
  call(&h);  // container 1
  call(&g);  // container 2
  connect_all();
  sched.dispatch(h);
  sched.dispatch(g);
  ASSERT_EQ(sent.size(), 2u);
  const auto input_of = [&](std::uint64_t c) {
    return *std::find_if(sent.begin(), sent.end(), [&](const sent_input& s) { return s.container == container(c); });
  };
  answer(input_of(1));  // h's container is idle from here
  sched.dispatch(h);
  time.advance(10s);
  answer(input_of(2));  // g's from here
  sched.dispatch(g);
  call();  // f's: the host is full
  EXPECT_EQ(process(1).terminated, 1);
  EXPECT_EQ(process(2).terminated, 0);
}

TEST_F(scheduler_test, an_idle_container_stops_after_its_scaledown_window_counted_from_its_last_call) {
  call();
  connect_all();
  sched.dispatch(fn);
  time.advance(10s);
  answer(sent[0]);  // idle from here
  time.advance(fn.scaledown_window - 1ms);
  EXPECT_EQ(process(1).terminated, 0);
  call();  // busy again before the window ends: the window starts again when it is next idle
  ASSERT_EQ(sent.size(), 2u);
  time.advance(30s);
  answer(sent[1]);
  time.advance(fn.scaledown_window - 1ms);
  EXPECT_EQ(process(1).terminated, 0);
  time.advance(1ms);
  EXPECT_EQ(process(1).terminated, 1);
  EXPECT_EQ(disconnects.at(1), "container stopped by the server");
  EXPECT_EQ(sched.find(container(1))->state, container_state::stopping);
  launcher.exit(1);
  EXPECT_EQ(sched.find(container(1)), nullptr);
  EXPECT_TRUE(warnings.empty());  // asked to stop: not a crash
}

TEST_F(scheduler_test, a_container_that_ignores_sigterm_is_killed_after_the_stop_grace) {
  call();
  connect_all();
  sched.dispatch(fn);
  answer(sent[0]);
  time.advance(fn.scaledown_window);
  ASSERT_EQ(process(1).terminated, 1);
  time.advance(stop_grace - 1ms);
  EXPECT_FALSE(process(1).killed);
  time.advance(1ms);
  EXPECT_TRUE(process(1).killed);
}

// --- retries and timeouts ---

TEST_F(scheduler_test, a_failed_attempt_runs_again_after_its_backoff_and_the_last_failure_counts_the_attempts) {
  fn.retries = Retries(2, 100ms, 2.0);
  const auto id = call();
  connect_all();
  sched.dispatch(fn);
  answer(sent.back(), status::remote_exception);
  EXPECT_EQ(state_of(id), call_state::backoff);
  time.advance(99ms);
  EXPECT_EQ(sent.size(), 1u);
  time.advance(1ms);  // the first retry waits initial_delay
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_NE(sent[1].attempt, sent[0].attempt);  // a new attempt of the same call
  EXPECT_EQ(sent[1].call, id);
  answer(sent.back(), status::remote_exception);
  time.advance(199ms);
  EXPECT_EQ(sent.size(), 2u);
  time.advance(1ms);  // the second waits initial_delay * backoff_coefficient
  ASSERT_EQ(sent.size(), 3u);
  answer(sent.back(), status::remote_exception);
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::remote_exception);
  EXPECT_THAT(ends.at(id).message, HasSubstr("'f' failed 3 times (3 attempts, the retry limit)"));
  EXPECT_THAT(ends.at(id).message, HasSubstr("the body threw"));
}

TEST_F(scheduler_test, an_attempt_out_of_time_is_cancelled_and_retried_while_its_slot_waits_for_the_body) {
  fn.timeout = 5s;
  fn.retries = Retries(1, 0ms);
  fn.max_containers = 1;
  const auto id = call();
  connect_all();
  sched.dispatch(fn);
  time.advance(5s - 1ms);
  EXPECT_TRUE(cancels.empty());
  time.advance(1ms);
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0], std::make_pair(sent[0].container, sent[0].attempt));
  time.advance(0ms);  // the retry is due at once, but the only container's slot is still the old attempt's
  EXPECT_EQ(sent.size(), 1u);
  EXPECT_EQ(state_of(id), call_state::queued);
  answer(sent[0], status::cancelled);  // the body stopped: its late answer frees the slot, the retry runs
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1].call, id);
  time.advance(5s);  // the retry runs out of time too: no retries left
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::timed_out);
  EXPECT_THAT(ends.at(id).message, HasSubstr("an attempt may run 5000 ms"));
  EXPECT_THAT(ends.at(id).message, HasSubstr("failed 2 times"));
}

TEST_F(scheduler_test, a_container_whose_attempt_will_not_stop_is_replaced_and_its_other_calls_run_again) {
  fn.max_inputs = 2;
  fn.max_containers = 1;
  const auto stuck = call();
  const auto other = call();
  connect_all();
  sched.dispatch(fn);
  ASSERT_EQ(sent.size(), 2u);
  graph.find(stuck)->cancelled = true;  // as the server cancels a running call
  sched.cancel_running(*graph.find(stuck));
  time.advance(cancel_grace - 1ms);
  EXPECT_FALSE(process(1).killed);
  time.advance(1ms);
  EXPECT_TRUE(process(1).killed);
  ASSERT_TRUE(ends.contains(stuck));  // the cancelled call ends now, as cancelled
  EXPECT_EQ(ends.at(stuck).outcome, status::cancelled);
  EXPECT_THAT(ends.at(stuck).message, HasSubstr("did not stop within the grace period"));
  launcher.exit(1, "was killed by signal 9 (SIGKILL)", 9);
  EXPECT_FALSE(ends.contains(other));  // not its fault: it runs again, on a new container
  EXPECT_EQ(launcher.launched.size(), 2u);
  connect_all();
  sched.dispatch(fn);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[2].call, other);
  EXPECT_EQ(sent[2].container, container(2));
  answer(sent[2]);
  EXPECT_EQ(ends.at(other).outcome, status::ok);
  EXPECT_EQ(ends.at(other).attempts, 1);  // the replaced container's attempt did not count
}

// --- crashes and failed starts ---

TEST_F(scheduler_test, a_crash_retries_the_calls_in_flight_and_repeated_crashes_space_out_the_starts) {
  fn.retries = Retries(10, 0ms);
  const auto id = call();
  connect_all();
  sched.dispatch(fn);
  launcher.exit(1, "was killed by signal 11 (SIGSEGV)", 11);  // the first crash: the next start is immediate
  time.advance(0ms);
  ASSERT_EQ(launcher.launched.size(), 2u);
  EXPECT_EQ(state_of(id), call_state::queued);
  connect_all();
  sched.dispatch(fn);
  launcher.exit(2, "was killed by signal 11 (SIGSEGV)", 11);  // the second in a row: 250 ms
  time.advance(249ms);
  EXPECT_EQ(launcher.launched.size(), 2u);
  time.advance(1ms);
  ASSERT_EQ(launcher.launched.size(), 3u);
  connect_all();
  sched.dispatch(fn);
  launcher.exit(3, "was killed by signal 11 (SIGSEGV)", 11);  // the third: 500 ms
  time.advance(499ms);
  EXPECT_EQ(launcher.launched.size(), 3u);
  time.advance(1ms);
  ASSERT_EQ(launcher.launched.size(), 4u);
  EXPECT_THAT(warnings,
              ::testing::Contains(HasSubstr("'f' has lost 3 containers in a row; the next starts in 500 ms")));
  connect_all();
  sched.dispatch(fn);
  answer(sent.back());  // a success ends the streak: the next crash is the first again
  EXPECT_EQ(ends.at(id).outcome, status::ok);
  EXPECT_EQ(ends.at(id).attempts, 4);
  call();
  launcher.exit(4, "was killed by signal 11 (SIGSEGV)", 11);
  time.advance(0ms);
  EXPECT_EQ(launcher.launched.size(), 5u);
}

TEST_F(scheduler_test, a_container_that_exits_before_connecting_fails_the_queue_saying_so) {
  fn.retries = Retries(3, 0ms);  // a binary that cannot start is not retried
  const auto id = call();
  launcher.launched.at(1)->reached_main = false;
  launcher.exit(1, "exited with code 1");
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::container_start_failed);
  EXPECT_THAT(ends.at(id).message, HasSubstr("could not start a container for 'f'"));
  EXPECT_THAT(ends.at(id).message, HasSubstr("exited with code 1 before it reached app.main"));
  EXPECT_THAT(ends.at(id).message, HasSubstr("it wrote nothing to stderr"));
}

TEST_F(scheduler_test, a_start_killed_from_outside_costs_the_queue_an_attempt_and_is_tried_again) {
  fn.retries = Retries(1, 0ms);
  const auto a = call();
  launcher.exit(1, "was killed by signal 9 (SIGKILL)", 9);
  EXPECT_FALSE(ends.contains(a));
  EXPECT_EQ(graph.find(a)->attempts, 1);
  EXPECT_EQ(launcher.launched.size(), 2u);  // tried again at once (the first loss in a row)
  launcher.exit(2, "was killed by signal 9 (SIGKILL)", 9);
  ASSERT_TRUE(ends.contains(a));  // out of retries
  EXPECT_EQ(ends.at(a).outcome, status::container_start_failed);
  EXPECT_THAT(ends.at(a).message, HasSubstr("failed 2 times"));
}

TEST_F(scheduler_test, a_container_that_never_connects_is_killed_at_the_deadline_and_fails_the_queue) {
  fn.retries = Retries(3, 0ms);
  const auto id = call();
  time.advance(connect_timeout - 1ms);
  EXPECT_FALSE(process(1).killed);
  time.advance(1ms);
  EXPECT_TRUE(process(1).killed);
  launcher.exit(1, "was killed by signal 9 (SIGKILL)", 9);  // our kill: a failed start, not bad luck
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::container_start_failed);
  EXPECT_EQ(launcher.running(), 0u);
}

TEST_F(scheduler_test, a_launcher_that_cannot_start_a_process_fails_the_queue_with_its_reason) {
  launcher.fail_with = "exec /bin/app: No such file or directory";
  const auto id = call();
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::container_start_failed);
  EXPECT_THAT(ends.at(id).message, HasSubstr("could not start a container for 'f': exec /bin/app: No such file"));
  EXPECT_TRUE(sched.containers().empty());
}

TEST_F(scheduler_test, only_a_starting_container_presenting_its_own_credential_connects_and_only_once) {
  EXPECT_EQ(sched.connected(container(42), ""), nullptr);
  call();
  const std::string credential = process(1).spec.credential;
  // A container of the same id launched by an earlier server (another credential), or a forged one.
  EXPECT_EQ(sched.connected(container(1), std::string(64, '0')), nullptr);
  EXPECT_EQ(sched.connected(container(1), ""), nullptr);
  EXPECT_EQ(sched.find(container(1))->state, container_state::starting);
  ASSERT_NE(sched.connected(container(1), credential), nullptr);
  EXPECT_EQ(sched.connected(container(1), credential), nullptr);  // once only
}

// --- stopping ---

TEST_F(scheduler_test, draining_stops_idle_containers_now_busy_ones_when_their_calls_end_and_starts_nothing) {
  fn.max_containers = 2;
  const auto busy = call();
  call();
  connect_all();
  sched.dispatch(fn);
  answer(sent[1]);  // container 2 idle, container 1 busy
  sched.drain(30s);
  EXPECT_EQ(process(2).terminated, 1);
  EXPECT_EQ(process(1).terminated, 0);
  call();
  EXPECT_EQ(launcher.launched.size(), 2u);  // nothing new starts
  answer(sent[0]);
  EXPECT_EQ(ends.at(busy).outcome, status::ok);
  EXPECT_EQ(process(1).terminated, 1);
}

TEST_F(scheduler_test, draining_stops_busy_containers_at_the_deadline_and_their_calls_fail_as_a_shutdown) {
  fn.retries = Retries(3, 0ms);
  const auto id = call();
  connect_all();
  sched.dispatch(fn);
  sched.drain(30s);
  time.advance(30s);
  EXPECT_EQ(process(1).terminated, 1);
  time.advance(stop_grace);
  EXPECT_TRUE(process(1).killed);
  launcher.exit(1, "was killed by signal 9 (SIGKILL)", 9);
  ASSERT_TRUE(ends.contains(id));
  EXPECT_EQ(ends.at(id).outcome, status::server_shutdown);  // not retried
  EXPECT_TRUE(sched.containers().empty());
}

}  // namespace
}  // namespace ferry::server
