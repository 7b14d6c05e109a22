// The call graph's rules, driven without sockets or processes: a fake host records what the graph asks of
// the server (run this call, send that result, cancel this one, forget that one).
#include "server/call_graph.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ferry/codec.hpp>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "server/apps.hpp"

namespace ferry::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using wire::status;

template <typename T>
std::string encoded(const T& value) {
  detail::buffer b;
  ferry::encode(b, value);
  return std::string(b.data(), b.size());
}

std::string bytes(const wire::payload& p) { return std::string(p.data(), p.size()); }

/// Does what the server does, minus the I/O: a ready call is queued, an unneeded one cancelled (at once when
/// it is not running, as the server does; a running one waits for its container), and everything is noted.
struct fake_host final : call_graph::host {
  call_graph graph{*this};
  function_state fn;
  std::uint64_t next_id = 1;
  std::vector<graph_id> readied, finished, delivered, cancelled, forgotten;
  std::map<graph_id, std::string> ran_with;  // the arguments each call was readied with
  std::map<graph_id, std::string> results;   // what each delivered call's caller got
  int emptied_count = 0;

  fake_host() { fn.name = "f"; }

  void ready(call_record& c) override {
    c.state = call_state::queued;
    readied.push_back(c.id);
    ran_with[c.id] = bytes(c.arguments);
  }
  void ended(call_record& c, call_state) override { finished.push_back(c.id); }
  void deliver(call_record& c) override {
    delivered.push_back(c.id);
    results[c.id] = bytes(c.result);
  }
  void unneeded(call_record& c) override {
    cancelled.push_back(c.id);
    c.cancelled = true;
    if (c.state != call_state::running) {
      graph.fail(c, {status::cancelled, "", "cancelled", c.function->name, c.call_id, ""});
    }
  }
  void forgetting(call_record& c) override { forgotten.push_back(c.id); }
  void emptied() override { ++emptied_count; }

  /// A call a program makes with `flags` (what it asked of the result) and encoded `arguments`.
  call_record& make(std::uint8_t flags = wire::deliver_result, const std::string& arguments = encoded(std::tuple<>{})) {
    auto c = std::make_unique<call_record>();
    c->id = graph_id{next_id++};
    c->call_id = "fc-" + std::to_string(number(c->id));
    c->flags = flags;
    c->function = &fn;
    c->arguments = wire::payload::copy_of(arguments);
    return graph.add(std::move(c));
  }
  /// A call with no arguments from other calls, started.
  call_record& started(std::uint8_t flags = wire::deliver_result) {
    call_record& c = make(flags);
    graph.start_when_ready(c);
    c.state = call_state::running;
    return c;
  }
  bool alive(graph_id id) const { return graph.find(id) != nullptr; }
  void succeed(call_record& c, int value) {
    const std::string v = encoded(value);
    graph.complete(c, status::ok, wire::payload::copy_of(v));
  }
  void throw_in(call_record& c, const std::string& message) {
    graph.fail(c, {status::remote_exception, "std::runtime_error", message, c.function->name, c.call_id, "stack"});
  }
  /// The error the caller of delivered call `id` got.
  wire::error_record error_of(graph_id id) { return wire::decode_error(results.at(id)); }
};

TEST(call_graph, a_call_runs_once_its_argument_calls_have_ended_with_their_results_spliced_in_place) {
  fake_host h;
  call_record& a = h.started(wire::keep_result);
  call_record& b = h.started(wire::keep_result);
  // consumer(a, 5, b): the placeholders are nils until a and b have results.
  call_record& consumer = h.make(wire::deliver_result, encoded(std::make_tuple(std::monostate{}, 5, std::monostate{})));
  ASSERT_TRUE(h.graph.add_argument(consumer, 0, a));
  ASSERT_TRUE(h.graph.add_argument(consumer, 2, b));
  h.graph.start_when_ready(consumer);
  EXPECT_THAT(h.readied, Not(::testing::Contains(consumer.id)));

  h.succeed(b, 9);
  EXPECT_THAT(h.readied, Not(::testing::Contains(consumer.id)));
  h.succeed(a, 7);
  ASSERT_THAT(h.readied, ::testing::Contains(consumer.id));
  EXPECT_EQ(h.ran_with[consumer.id], encoded(std::tuple<int, int, int>{7, 5, 9}));
  EXPECT_THAT(consumer.arguments_from, ElementsAre(a.call_id, b.call_id));
  // Their programs keep them (keep_result): read, but not forgotten.
  EXPECT_TRUE(h.alive(a.id));
  EXPECT_TRUE(h.alive(b.id));
}

TEST(call_graph, a_call_passed_to_two_consumers_is_kept_until_both_have_read_it_and_its_caller_let_it_go) {
  fake_host h;
  call_record& shared = h.started(wire::keep_result);
  const graph_id shared_id = shared.id;
  const std::string placeholder = encoded(std::tuple<std::monostate>{});
  call_record& first = h.make(wire::deliver_result, placeholder);
  call_record& second = h.make(wire::deliver_result, placeholder);
  ASSERT_TRUE(h.graph.add_argument(first, 0, shared));
  ASSERT_TRUE(h.graph.add_argument(second, 0, shared));
  h.graph.start_when_ready(first);
  h.graph.start_when_ready(second);

  h.graph.release(shared);  // the program dropped its future: the consumers still need the result
  EXPECT_TRUE(h.alive(shared_id));
  EXPECT_THAT(h.cancelled, IsEmpty());

  h.succeed(shared, 3);
  EXPECT_EQ(h.ran_with[first.id], encoded(std::tuple<int>{3}));
  EXPECT_EQ(h.ran_with[second.id], encoded(std::tuple<int>{3}));
  EXPECT_FALSE(h.alive(shared_id)) << "read by both, kept by nobody: forgotten";
  EXPECT_THAT(h.forgotten, ElementsAre(shared_id));
}

TEST(call_graph, an_awaited_call_is_delivered_when_it_ends_or_at_once_if_it_has_and_then_forgotten) {
  fake_host h;
  call_record& later = h.started(0);
  const graph_id later_id = later.id;
  h.graph.await(later);
  EXPECT_THAT(h.delivered, IsEmpty());
  h.succeed(later, 1);
  EXPECT_THAT(h.delivered, ElementsAre(later_id));
  EXPECT_FALSE(h.alive(later_id));

  call_record& early = h.started(wire::keep_result);
  const graph_id early_id = early.id;
  h.succeed(early, 2);
  EXPECT_TRUE(h.alive(early_id)) << "kept for its caller";
  h.graph.await(early);
  EXPECT_THAT(h.delivered, ElementsAre(later_id, early_id));
  h.graph.release(early);
  EXPECT_FALSE(h.alive(early_id));
  EXPECT_EQ(h.emptied_count, 2);
}

TEST(call_graph, a_failure_runs_down_a_long_chain_in_constant_stack_told_once_with_the_hops_counted) {
  // A reduce: step k takes step k-1's result. The head fails; every step fails, naming its own argument
  // call and where the failure began, with the first message once: the error stays small whatever the length.
  fake_host h;
  constexpr int steps = 50'000;
  call_record& head = h.started(wire::keep_result);
  const std::string head_call = head.call_id;
  call_record* previous = &head;
  std::vector<graph_id> ids;
  for (int k = 0; k < steps; ++k) {
    call_record& step =
        h.make(k + 1 == steps ? wire::deliver_result : 0, encoded(std::make_tuple(std::monostate{}, k)));
    ASSERT_TRUE(h.graph.add_argument(step, 0, *previous));
    h.graph.start_when_ready(step);
    ids.push_back(step.id);
    previous = &step;
  }
  const graph_id last = ids.back();
  h.graph.await(*previous);
  h.throw_in(head, "bad input " + std::string(1000, 'x'));

  ASSERT_THAT(h.delivered, ElementsAre(last));
  EXPECT_THAT(h.readied, ElementsAre(head.id)) << "no step ran";
  const wire::error_record error = h.error_of(last);
  EXPECT_EQ(error.code, status::remote_exception);
  EXPECT_EQ(error.type, "std::runtime_error") << "the type, function and call stay the first failure's";
  EXPECT_EQ(error.call_id, head_call);
  EXPECT_THAT(error.message, HasSubstr("argument 1 of 'f' comes from call fc-" + std::to_string(number(last) - 1)));
  EXPECT_THAT(error.message, HasSubstr("because call " + head_call + " of 'f', 49999 calls further up its chain"));
  EXPECT_THAT(error.message, HasSubstr("bad input xxx"));
  EXPECT_LT(error.message.size(), 1400u) << "the first failure's message once, not once per step";
  // Every step was forgotten once read (the last once delivered): only the head, which its program keeps, stays.
  EXPECT_EQ(h.graph.size(), 1u);
}

TEST(call_graph, an_argument_that_failed_already_fails_its_consumer_at_once) {
  fake_host h;
  call_record& failed = h.started(wire::keep_result);
  h.throw_in(failed, "boom");
  call_record& consumer = h.make(wire::deliver_result, encoded(std::tuple<std::monostate>{}));
  const graph_id consumer_id = consumer.id;
  h.graph.await(consumer);
  EXPECT_FALSE(h.graph.add_argument(consumer, 0, failed));
  EXPECT_THAT(h.delivered, ElementsAre(consumer_id));
  EXPECT_THAT(h.readied, Not(::testing::Contains(consumer_id)));
}

TEST(call_graph, malformed_arguments_fail_the_call_instead_of_running_it) {
  fake_host h;
  call_record& dep = h.started(wire::keep_result);
  call_record& consumer = h.make(wire::deliver_result, std::string("\xc1", 1));  // not msgpack
  const graph_id consumer_id = consumer.id;
  ASSERT_TRUE(h.graph.add_argument(consumer, 0, dep));
  h.graph.start_when_ready(consumer);
  h.succeed(dep, 1);
  EXPECT_THAT(h.readied, Not(::testing::Contains(consumer_id)));
  EXPECT_THAT(h.delivered, ElementsAre(consumer_id));
}

TEST(call_graph, calls_nobody_needs_any_more_are_cancelled_up_their_arguments_but_not_those_kept_or_spawned) {
  // root <- middle <- leaf, plus `kept` (its program keeps it) and `spawned` (durable), both feeding leaf.
  fake_host h;
  call_record& root = h.started(0);
  call_record& kept = h.started(wire::keep_result);
  call_record& spawned = h.started(0);
  spawned.durable = true;
  const std::string one = encoded(std::tuple<std::monostate>{});
  call_record& middle = h.make(0, one);
  ASSERT_TRUE(h.graph.add_argument(middle, 0, root));
  h.graph.start_when_ready(middle);
  call_record& leaf =
      h.make(wire::deliver_result, encoded(std::tuple<std::monostate, std::monostate, std::monostate>{}));
  ASSERT_TRUE(h.graph.add_argument(leaf, 0, middle));
  ASSERT_TRUE(h.graph.add_argument(leaf, 1, kept));
  ASSERT_TRUE(h.graph.add_argument(leaf, 2, spawned));
  h.graph.start_when_ready(leaf);
  const graph_id root_id = root.id, middle_id = middle.id, leaf_id = leaf.id;

  h.graph.caller_gone(leaf);  // the program went away (or cancelled the call it awaited)
  EXPECT_THAT(h.cancelled, ElementsAre(leaf_id, middle_id, root_id));
  EXPECT_FALSE(h.alive(leaf_id));
  EXPECT_FALSE(h.alive(middle_id));
  EXPECT_TRUE(h.alive(root_id)) << "running: it ends when its container stops it";
  EXPECT_TRUE(h.alive(kept.id));
  EXPECT_TRUE(h.alive(spawned.id));
  h.graph.fail(root, {status::cancelled, "", "cancelled", "f", root.call_id, ""});
  EXPECT_FALSE(h.alive(root_id)) << "ended, and nothing reads it";
}

TEST(call_graph, a_tail_call_takes_the_callers_place_and_a_chain_of_them_holds_one_node) {
  // consumer(original); original's body tail-calls t1, whose body tail-calls t2, ...
  fake_host h;
  call_record& original = h.started(wire::keep_result);
  original.caller_session = session_id{7};
  original.caller_call_id = 70;
  call_record& consumer = h.make(wire::deliver_result, encoded(std::tuple<std::monostate>{}));
  ASSERT_TRUE(h.graph.add_argument(consumer, 0, original));
  h.graph.start_when_ready(consumer);
  const graph_id consumer_id = consumer.id;

  call_record* current = &original;
  for (int hop = 0; hop < 1000; ++hop) {
    call_record& next = h.started(0);  // made by the running body, which returns it
    const graph_id gone = current->id;
    h.graph.hand_over(*current, next);
    EXPECT_FALSE(h.alive(gone));
    EXPECT_EQ(next.caller_session, session_id{7});
    EXPECT_EQ(next.caller_call_id, 70u);
    EXPECT_EQ(next.flags, wire::keep_result);
    current = &next;
    ASSERT_EQ(h.graph.size(), 2u) << "the consumer and the chain's one live node";
  }
  h.succeed(*current, 42);
  EXPECT_EQ(h.ran_with[consumer_id], encoded(std::tuple<int>{42}));
}

TEST(call_graph, a_tail_call_to_a_call_that_has_ended_already_settles_at_once) {
  fake_host h;
  call_record& original = h.started(wire::deliver_result);  // its caller awaits it
  call_record& target = h.started(wire::keep_result);       // the body keeps the call it will return
  h.succeed(target, 5);
  const graph_id target_id = target.id;
  h.graph.hand_over(original, target);
  EXPECT_THAT(h.delivered, ElementsAre(target_id)) << "the original's caller gets the target's result";
  EXPECT_FALSE(h.alive(target_id)) << "delivered, and kept by nobody: the caller's flags replaced the body's";
  EXPECT_TRUE(h.graph.empty());
}

// An unordered_map keeps its buckets at the most entries it ever held: a burst of calls would hold them
// for good. Once the graph is empty again, release_memory (the server's, when idle) gives them back.
TEST(call_graph, an_emptied_graph_gives_back_the_table_a_burst_of_calls_grew) {
  fake_host h;
  std::vector<call_record*> burst;
  for (int i = 0; i < 100'000; ++i) burst.push_back(&h.started(wire::deliver_result));
  const std::size_t grown = h.graph.calls().bucket_count();
  for (call_record* c : burst) h.succeed(*c, 1);  // delivered, and forgotten
  ASSERT_TRUE(h.graph.empty());
  h.graph.release_memory();
  EXPECT_LT(h.graph.calls().bucket_count(), grown / 1000) << "the buckets of 100,000 calls are still held";
  call_record& again = h.started(wire::deliver_result);  // the graph takes calls again
  const graph_id again_id = again.id;
  h.succeed(again, 2);
  EXPECT_EQ(h.delivered.back(), again_id);
}

}  // namespace
}  // namespace ferry::server
