// The control service's rules, driven without sockets or processes: deployments, spawned calls stored before
// they are acknowledged, get and cancel, the backlog in the store, redeployments, recovery. The store is the
// real SQLite one (in memory, or in a temporary directory where a restart is the point), the call graph and
// the scheduler are the real ones; time and containers are the scheduler's fakes.
#include "server/control_service.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <ferry/codec.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "scheduler_fakes.hpp"
#include "server/sha256.hpp"

namespace ferry::server {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using testing::fake_clock;
using testing::fake_launcher;
using ::testing::HasSubstr;
using wire::status;

/// What one request was answered: the status, and the payload (an error record's message for errors).
struct answered {
  bool done = false;
  status code = status::ok;
  std::string payload;
  std::string message() const { return wire::decode_error({payload.data(), payload.size()}).message; }
  template <typename T>
  T value() const {
    detail::reader r{{payload.data(), payload.size()}};
    return ferry::decode<T>(r);
  }
};

wire::function_spec spec(const std::string& name, const std::string& signature = "int64(int64)") {
  return {name, signature, 1, 1, 0, {0, 1000, 2.0, 60'000}, 0, 0, 60'000, ""};
}

/// A temporary directory, removed with what it holds.
struct temp_dir {
  temp_dir() {
    char name[] = "/tmp/ferry-control-test-XXXXXX";
    path = ::mkdtemp(name);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path path;
};

/// The server's components, wired as the server wires them, with what would go to sessions noted instead.
class parts final : public call_graph::host, public scheduler::host, public control_service::host {
 public:
  explicit parts(control_options options, std::unique_ptr<state_store> store = nullptr)
      : control(*this, graph, numbers, sched, time, metrics, store ? std::move(store) : open_sqlite_store(":memory:"),
                std::move(options)) {}

  void ready(call_record& c) override { sched.enqueue(c); }
  void ended(call_record& c, call_state was) override {
    sched.ended(c, was);
    if (c.durable) control.finished(c);
  }
  void deliver(call_record&) override {}
  void unneeded(call_record& c) override { cancel(c); }
  void forgetting(call_record&) override {}
  void emptied() override {}

  bool send_input(container_record& c, attempt_id attempt, const call_record& call) override {
    sent.push_back({c.id, attempt, call.call_id});
    return true;
  }
  void send_cancel(container_record&, attempt_id) override {}
  void disconnect(container_record&, const std::string&) override {}
  void refill(function_state& fn) override { control.refill(fn); }
  void output(container_record&, int, std::string_view) override {}
  void exiting(container_record&) override {}
  void exited() override {}
  void unplaced(ferry::server::function_state&, std::size_t) override {}
  void warn_repeating(const std::string&, const std::string&, const std::string&) override {}

  void reply(const control_answer& answer, status code, const std::function<void(detail::buffer&)>& write) override {
    detail::buffer payload;
    write(payload);
    answer.to(code, payload.view());
  }
  void cancel(call_record& c) override {
    c.cancelled = true;
    if (c.state == call_state::running) return sched.cancel_running(c);
    graph.fail(c, {status::cancelled, "", "'" + c.function->name + "' was cancelled before it started",
                   c.function->name, c.call_id, ""});
  }
  bool shutting_down() const override { return false; }

  /// An answer that lands in `a`.
  static control_answer into(answered& a) {
    return {session_id{}, 0, [&a](status code, std::span<const char> payload) {
              a.done = true;
              a.code = code;
              a.payload.assign(payload.data(), payload.size());
            }};
  }
  answered deploy(const std::string& app, std::vector<wire::function_spec> specs, const std::string& image = "ELF") {
    answered a;
    control.deploy(into(a), app, std::move(specs), {image.data(), image.size()}, app, {});
    return a;
  }
  function_state& fn(const std::string& app, const std::string& name) {
    return control.deployed().at(app)->functions.at(name);
  }
  /// Spawns app.name(x); the answer comes once the store has it (time.advance(0ms)).
  answered& spawn(const std::string& app, const std::string& name, std::int64_t x, const std::string& key = "") {
    answered& a = spawns.emplace_back();
    detail::buffer args;
    ferry::encode(args, std::tuple<std::int64_t>{x});
    control.spawn(fn(app, name), key, args.view(), into(a));
    return a;
  }
  answered get(const std::string& call_id, std::uint32_t timeout_ms = 0) {
    answered a;
    control.get_call(call_id, timeout_ms, into(a));
    return a;
  }
  /// Every started container connects, and dispatch runs.
  void connect_all(function_state& f) {
    for (const auto& [id, process] : launcher.launched) {
      const container_id container{id};
      if (container_record* c = sched.find(container); c && c->state == container_state::starting) {
        sched.connected(container, process->spec.credential);
      }
    }
    sched.dispatch(f);
  }
  /// The container that ran input `i` answers it with `value`.
  void answer(std::size_t i, std::int64_t value) {
    const auto& s = sent.at(i);
    const auto a = sched.answered(*sched.find(s.container), s.attempt, status::ok);
    function_state& f = *a.call->function;
    detail::buffer result;
    ferry::encode(result, value);
    graph.complete(*a.call, status::ok, wire::payload(std::move(result)));
    sched.dispatch(f);
  }

  struct sent_input {
    container_id container;
    attempt_id attempt;
    std::string call_id;
  };
  fake_clock time;
  fake_launcher launcher;
  server_metrics metrics;
  call_numbering numbers{0x1000};
  call_graph graph{*this};
  scheduler sched{*this, graph, time, launcher, scheduler_options{}};
  control_service control;
  std::deque<answered> spawns;  // (a deque: answers point into it)
  std::vector<sent_input> sent;
};

class control_service_test : public ::testing::Test {
 protected:
  temp_dir dir;
};

// A deployed binary is hashed and stored off the service's thread (control_options::off_loop): the deploy is
// answered after that, in order with other deploys, and other requests are answered meanwhile.
TEST_F(control_service_test, a_deploys_binary_is_hashed_and_stored_off_the_loop_and_answered_after) {
  std::vector<std::pair<std::function<void()>, std::function<void()>>> off_loop;  // run by the test
  control_options options{dir.path};
  options.off_loop = [&](std::function<void()> work, std::function<void()> then) {
    off_loop.emplace_back(std::move(work), std::move(then));
  };
  parts p(std::move(options));
  answered first, second;
  const std::string image_a = "ELF a", image_b = "ELF b";
  p.control.deploy(parts::into(first), "app", {spec("f")}, {image_a.data(), image_a.size()}, "app", {});
  p.control.deploy(parts::into(second), "app", {spec("f"), spec("g")}, {image_b.data(), image_b.size()}, "app", {});
  EXPECT_FALSE(first.done);
  EXPECT_TRUE(p.control.app_rows().empty());  // (nothing deployed yet, and the service answers meanwhile)
  ASSERT_EQ(off_loop.size(), 2U);
  for (auto& [work, then] : off_loop) work();  // (on another thread in the server)
  EXPECT_FALSE(first.done);                    // answered on the service's thread only
  EXPECT_TRUE(std::filesystem::exists(dir.path / "binaries" / ferry::server::sha256_hex(image_a)));
  off_loop[0].second();
  ASSERT_TRUE(first.done);
  EXPECT_EQ(first.value<std::string>(), ferry::server::sha256_hex(image_a));
  off_loop[1].second();
  ASSERT_TRUE(second.done);
  EXPECT_EQ(p.control.deployed().at("app")->digest, ferry::server::sha256_hex(image_b));  // the later one stands
  EXPECT_EQ(p.control.deployed().at("app")->functions.size(), 2U);
}

TEST_F(control_service_test, a_spawn_is_answered_once_stored_runs_and_its_outcome_is_kept_for_get) {
  parts p({dir.path});
  ASSERT_TRUE(p.deploy("app", {spec("f")}).done);
  answered& spawned = p.spawn("app", "f", 20);
  EXPECT_FALSE(spawned.done);  // not before the store has it
  EXPECT_TRUE(p.launcher.launched.empty());
  p.time.advance(0ms);
  ASSERT_TRUE(spawned.done);
  ASSERT_EQ(spawned.code, status::ok);
  const auto call_id = spawned.value<std::string>();
  EXPECT_THAT(call_id, ::testing::StartsWith("fc-"));
  auto stored = p.control.store().find_call(call_id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_FALSE(stored->finished);
  EXPECT_EQ(p.launcher.launched.size(), 1u);  // stored: now it runs
  EXPECT_EQ(p.get(call_id).code, status::running);
  answered waiting = p.get(call_id, 5'000);
  p.connect_all(p.fn("app", "f"));
  ASSERT_EQ(p.sent.size(), 1u);
  EXPECT_EQ(p.sent[0].call_id, call_id);
  EXPECT_FALSE(waiting.done);
  p.answer(0, 40);
  ASSERT_TRUE(waiting.done);  // the waiting get is answered as the call ends
  EXPECT_EQ(waiting.code, status::ok);
  EXPECT_EQ(waiting.value<std::int64_t>(), 40);
  p.time.advance(0ms);
  const auto later = p.get(call_id);
  EXPECT_EQ(later.code, status::ok);
  EXPECT_EQ(later.value<std::int64_t>(), 40);
  EXPECT_TRUE(p.control.store().find_call(call_id)->finished);
}

TEST_F(control_service_test, a_get_that_outlasts_its_timeout_is_answered_running_and_an_unknown_call_is_named) {
  parts p({dir.path});
  p.deploy("app", {spec("f")});
  answered& spawned = p.spawn("app", "f", 1);
  p.time.advance(0ms);
  const auto call_id = spawned.value<std::string>();
  answered waiting = p.get(call_id, 1'000);
  p.time.advance(999ms);
  EXPECT_FALSE(waiting.done);
  p.time.advance(1ms);
  ASSERT_TRUE(waiting.done);
  EXPECT_EQ(waiting.code, status::running);
  EXPECT_THAT(waiting.message(), HasSubstr("has not finished within the timeout; get it again later"));
  const auto unknown = p.get("fc-00000000deadbeef");
  EXPECT_EQ(unknown.code, status::unknown_call);
  EXPECT_THAT(unknown.message(), HasSubstr("no call fc-00000000deadbeef on this server"));
}

TEST_F(control_service_test, an_idempotency_key_gets_the_first_calls_id_before_and_after_it_is_stored) {
  parts p({dir.path});
  p.deploy("app", {spec("f")});
  answered& first = p.spawn("app", "f", 1, "order-17");
  answered& again = p.spawn("app", "f", 1, "order-17");  // before the first is stored
  p.time.advance(0ms);
  answered& later = p.spawn("app", "f", 1, "order-17");  // after
  p.time.advance(0ms);
  ASSERT_TRUE(first.done && again.done && later.done);
  EXPECT_EQ(again.value<std::string>(), first.value<std::string>());
  EXPECT_EQ(later.value<std::string>(), first.value<std::string>());
  EXPECT_EQ(p.control.store().unfinished_calls().size(), 1u);
}

TEST_F(control_service_test, spawns_beyond_the_queue_limit_wait_in_the_store_and_run_in_spawn_order) {
  parts p({dir.path, /*max_queued_inputs=*/2});
  p.deploy("app", {spec("f")});
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) p.spawn("app", "f", i);
  p.time.advance(0ms);
  for (const auto& s : p.spawns) {
    ASSERT_EQ(s.code, status::ok);  // spawns are never refused for room: the disk is their limit
    ids.push_back(s.value<std::string>());
  }
  EXPECT_LE(p.fn("app", "f").queue.size(), 2u);
  p.connect_all(p.fn("app", "f"));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(p.sent.size(), i + 1) << "call " << i << " did not start";
    EXPECT_EQ(p.sent[i].call_id, ids[i]);
    p.answer(i, static_cast<std::int64_t>(i));
  }
  p.time.advance(0ms);
  EXPECT_TRUE(p.control.store().unfinished_calls().empty());
}

TEST_F(control_service_test, cancelling_a_spawned_call_that_waits_in_the_store_ends_it_before_it_starts) {
  parts p({dir.path, /*max_queued_inputs=*/1});
  p.deploy("app", {spec("f")});
  for (int i = 0; i < 4; ++i) p.spawn("app", "f", i);
  p.time.advance(0ms);
  const auto last = p.spawns.back().value<std::string>();
  answered cancelled;
  p.control.cancel_spawned(last, parts::into(cancelled));
  EXPECT_EQ(cancelled.code, status::ok);
  const auto outcome = p.get(last);
  EXPECT_EQ(outcome.code, status::cancelled);
  EXPECT_THAT(outcome.message(), HasSubstr("was cancelled before it started"));
  p.connect_all(p.fn("app", "f"));
  for (std::size_t i = 0; i < 3; ++i) p.answer(i, 0);
  EXPECT_EQ(p.sent.size(), 3u);  // the cancelled one never ran
  answered unknown;
  p.control.cancel_spawned("fc-00000000deadbeef", parts::into(unknown));
  EXPECT_EQ(unknown.code, status::unknown_call);
}

TEST_F(control_service_test, a_redeployment_keeps_queued_calls_whose_signature_is_unchanged_and_fails_the_others) {
  parts p({dir.path});
  p.deploy("app", {spec("f"), spec("g")}, "version 1");
  answered& f_call = p.spawn("app", "f", 1);
  answered& g_call = p.spawn("app", "g", 1);
  p.time.advance(0ms);  // queued; their containers start but never connect
  const auto v1 = p.fn("app", "f").app->digest;
  const auto redeployed = p.deploy("app", {spec("f"), spec("g", "string(string)")}, "version 2");
  ASSERT_EQ(redeployed.code, status::ok);
  EXPECT_NE(redeployed.value<std::string>(), v1);
  const auto g_outcome = p.get(g_call.value<std::string>());
  EXPECT_EQ(g_outcome.code, status::cancelled);
  EXPECT_THAT(g_outcome.message(), HasSubstr("app 'app' was redeployed without 'g' with this signature"));
  function_state& f2 = p.fn("app", "f");
  ASSERT_EQ(f2.queue.size(), 1u);
  EXPECT_EQ(f2.queue.front()->call_id, f_call.value<std::string>());
  EXPECT_EQ(f2.app->digest, redeployed.value<std::string>());
  // The new version's binary is what its containers run, stored by its digest.
  const auto& newest = p.launcher.launched.rbegin()->second->spec;
  EXPECT_EQ(newest.executable, (dir.path / "binaries" / f2.app->digest).string());
}

TEST_F(control_service_test, stopping_an_app_fails_its_queued_calls_and_an_unknown_app_is_named) {
  parts p({dir.path});
  p.deploy("app", {spec("f")});
  answered& spawned = p.spawn("app", "f", 1);
  p.time.advance(0ms);
  answered stopped;
  p.control.stop_app(parts::into(stopped), "app");
  EXPECT_EQ(stopped.code, status::ok);
  EXPECT_TRUE(p.control.deployed().empty());
  const auto outcome = p.get(spawned.value<std::string>());
  EXPECT_EQ(outcome.code, status::cancelled);
  EXPECT_THAT(outcome.message(), HasSubstr("app 'app' was stopped before 'f' started"));
  answered unknown;
  p.control.stop_app(parts::into(unknown), "app");
  EXPECT_EQ(unknown.code, status::unknown_app);
  EXPECT_THAT(unknown.message(), HasSubstr("no app named 'app' is deployed (see `ferry apps`)"));
}

TEST_F(control_service_test, bad_deployments_are_refused_saying_what_to_fix) {
  parts embedded({});  // no state directory: an embedded server
  const auto no_state = embedded.deploy("app", {spec("f")});
  EXPECT_EQ(no_state.code, status::bad_arguments);
  EXPECT_THAT(no_state.message(), HasSubstr("deploy to a `ferry server`"));
  parts p({dir.path});
  const auto bad_name = p.deploy("my.app", {spec("f")});
  EXPECT_EQ(bad_name.code, status::bad_arguments);
  EXPECT_THAT(bad_name.message(), HasSubstr("'my.app' is not a valid app name"));
  auto zero = spec("f");
  zero.max_inputs = 0;
  const auto bad_spec = p.deploy("app", {zero});
  EXPECT_EQ(bad_spec.code, status::bad_arguments);
  EXPECT_THAT(bad_spec.message(), HasSubstr("function 'f': max_inputs and max_containers must be at least 1"));
  EXPECT_TRUE(p.control.deployed().empty());
}

TEST_F(control_service_test, looking_up_a_function_names_what_is_deployed) {
  parts p({dir.path});
  p.deploy("app", {spec("f"), spec("g")});
  answered a;
  EXPECT_EQ(p.control.deployed_function(parts::into(a), "app.f"), &p.fn("app", "f"));
  EXPECT_FALSE(a.done);
  EXPECT_EQ(p.control.deployed_function(parts::into(a), "app.h"), nullptr);
  EXPECT_EQ(a.code, status::unknown_function);
  EXPECT_THAT(a.message(), HasSubstr("app 'app' has no function 'h' (it has: f, g)"));
  EXPECT_EQ(p.control.deployed_function(parts::into(a), "other.f"), nullptr);
  EXPECT_EQ(a.code, status::unknown_app);
  EXPECT_THAT(a.message(), HasSubstr("deploy it with `ferry deploy ./BINARY`"));
}

TEST_F(control_service_test, after_a_restart_deployments_come_back_and_unfinished_calls_run_again) {
  std::string unfinished;
  std::string orphaned;
  {
    parts before({dir.path}, open_sqlite_store(dir.path / "ferry.db"));
    before.deploy("app", {spec("f")});
    before.deploy("gone", {spec("f")});
    answered& a = before.spawn("app", "f", 1);
    answered& b = before.spawn("gone", "f", 1);
    before.time.advance(0ms);
    unfinished = a.value<std::string>();
    orphaned = b.value<std::string>();
    answered stopped;
    before.control.stop_app(parts::into(stopped), "gone");
    before.time.advance(0ms);
  }  // the server stops with `unfinished` queued
  parts after({dir.path}, open_sqlite_store(dir.path / "ferry.db"));
  after.control.recover();
  ASSERT_EQ(after.control.deployed().size(), 1u);
  ASSERT_TRUE(after.control.deployed().contains("app"));
  after.connect_all(after.fn("app", "f"));
  ASSERT_EQ(after.sent.size(), 1u);
  EXPECT_EQ(after.sent[0].call_id, unfinished);
  after.answer(0, 7);
  EXPECT_EQ(after.get(unfinished).value<std::int64_t>(), 7);
  EXPECT_EQ(after.get(orphaned).code, status::cancelled);
}

}  // namespace
}  // namespace ferry::server
