// The call graph: the server's calls and what links them. A call may take other calls' results as arguments
// (futures passed as arguments), hand its result over to another call (a tail call), and be awaited, kept or
// released by its caller. The graph decides when a call may run (its arguments have all arrived), what a
// call whose argument failed fails with, which calls nobody needs any more (to be cancelled), and when a call
// can be forgotten. It does no I/O and knows no containers or sessions: what those decisions mean outside it
// (queue the call, send a result, cancel a running attempt) it asks of its host.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <ferry/codec.hpp>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/clock.hpp"
#include "server/ids.hpp"
#include "wire/payload.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

struct function_state;
struct container_record;

enum class call_state { waiting, queued, running, backoff, done };

/// What ferry::progress last reported for a call.
struct progress_record {
  double done = 0;
  double total = 0;
  std::string message;
};

/// One call, from the moment the server accepts it until nobody needs its result any more: a node of the
/// graph that futures passed as arguments, and tail calls, make of calls.
struct call_record {
  graph_id id{};
  std::string call_id;
  session_id caller_session{};  // whose call this is, in whose numbering caller_call_id is
  std::uint64_t caller_call_id = 0;
  std::uint8_t flags = 0;  // wire::deliver_result | wire::keep_result
  function_state* function = nullptr;
  call_state state = call_state::waiting;
  /// With nil placeholders where deps go, until spliced. Kept until the call ends, for retries and for
  /// re-queueing when a container is replaced.
  wire::payload arguments;
  ferry::server::attempt_id attempt_id{};  // the running attempt, as its container knows it (from input_header)
  int attempts = 0;                        // attempts started (since the last tail_hop)
  std::uint32_t tail_hops = 0;             // tail calls its body took in its container (tail_hop)
  bool cancelled = false;                  // by its caller: never retried
  bool durable = false;                    // spawned: stored, and its outcome is stored when it ends
  std::unique_ptr<clock::timer> timer;     // the running attempt's timeout, or the delay before a retry
  /// Argument calls this one waits for, by argument position; each holds a reader count on the dep.
  std::vector<std::pair<std::uint32_t, call_record*>> deps;
  std::size_t unresolved = 0;               // deps not done yet
  std::vector<call_record*> consumers;      // calls waiting for this one's result
  std::size_t readers = 0;                  // consumers that will still read `result`
  container_record* container = nullptr;    // while running
  wire::status outcome = wire::status::ok;  // once done: the value, or an error record, in `result`
  wire::payload result;
  /// Failed because an argument call failed: how many calls up the chain of arguments the failure began
  /// (1: the argument call itself), and that first failure's message, shared along the chain so that an
  /// error passed down a long chain (a reduce) is told once, not once per step.
  std::uint32_t failed_upstream = 0;
  std::shared_ptr<const std::string> first_failure;
  // What observers see (the HTTP API, the dashboard, metrics).
  std::string parent_call_id;               // the call whose body made this one; "" when a program made it
  graph_id parent{};                        // that call: its logs go where the parent's go; {} for none
  std::vector<std::string> arguments_from;  // the calls whose results are its arguments
  double created_at = 0;                    // unix s
  std::chrono::steady_clock::time_point created;
  container_id last_container{};  // of the latest attempt
  std::unique_ptr<progress_record> progress;
};

/// A call id: "fc-" and 16 hex digits.
inline std::string format_call_id(std::uint64_t n) { return fmt::format("fc-{:016x}", n); }

/// The server's numbering of its calls: the graph's ids (1, 2, ...), and the call ids users see, made from
/// them plus a base that is random per server start, so that call ids do not repeat across restarts.
class call_numbering {
 public:
  explicit call_numbering(std::uint64_t base) : base_(base) {}
  /// A new call: its id in the graph, and its call id.
  std::pair<graph_id, std::string> next() {
    const std::uint64_t id = next_++;
    return {graph_id{id}, format_call_id(base_ + id)};
  }

 private:
  std::uint64_t base_;
  std::uint64_t next_ = 1;
};

/// The calls, by id, and the rules that link them. Every method may call the host's hooks, and a hook
/// may call back into the graph: a call passed in may have been forgotten (freed) when a method returns,
/// unless the method says otherwise. Failures run down chains of any length in constant stack (see complete).
class call_graph {
 public:
  /// What the graph asks of the server around it.
  class host {
   public:
    /// All of `call`'s arguments are in `call.arguments`: it may be queued to run.
    virtual void ready(call_record& call) = 0;
    /// `call` has ended (its outcome and result are set; it was in state `was`): whatever ran or queued it
    /// lets go of it, and observers are told. Its consumers have not been told yet.
    virtual void ended(call_record& call, call_state was) = 0;
    /// `call`'s caller awaits its result, which exists: send it.
    virtual void deliver(call_record& call) = 0;
    /// Nothing can receive `call`'s result any more: cancel it. It ends through complete or fail, at once or
    /// once its running attempt stops.
    virtual void unneeded(call_record& call) = 0;
    /// `call` is about to be freed: nothing may point at it after this returns.
    virtual void forgetting(call_record& call) = 0;
    /// The last call has been forgotten.
    virtual void emptied() = 0;

   protected:
    ~host() = default;
  };

  explicit call_graph(host& h) : host_(h) {}
  call_graph(const call_graph&) = delete;
  call_graph& operator=(const call_graph&) = delete;

  /// Takes a new call, waiting (not yet started), whose id no other call has.
  call_record& add(std::unique_ptr<call_record> call);
  /// Makes the result of `dep` argument `position` (from 0) of `consumer`, a call added and not started.
  /// False when `dep` has failed already: `consumer` has then failed with its error (and may be gone).
  bool add_argument(call_record& consumer, std::uint32_t position, call_record& dep);
  /// After its arguments were added: starts `consumer` when none is still running (see host::ready).
  void start_when_ready(call_record& consumer);
  /// Ends `call` with `outcome` and `payload` (the value, or an encoded error record: kept bounded, see
  /// wire::bound_error). Its consumers go on, or fail naming it; its caller gets it if it awaits it.
  void complete(call_record& call, wire::status outcome, wire::payload payload);
  void fail(call_record& call, const wire::error_record& error);
  /// The caller awaits `call`'s result: delivered at once when it has ended, else when it ends.
  void await(call_record& call);
  /// The caller no longer keeps `call` for passing as an argument (it released the future).
  void release(call_record& call);
  /// The caller has gone: it will neither await, keep nor pass `call`.
  void caller_gone(call_record& call);
  /// `original` ended by tail-calling `target`, a call its body made: `target` takes its place (its caller,
  /// what the caller asked for, its consumers), and `original` is forgotten. A chain of tail calls holds
  /// one node, whatever its length. The host has moved the caller's own records before.
  void hand_over(call_record& original, call_record& target);
  /// Frees `call`, which never started and which nothing reads (a spawned call the store refused).
  void discard(call_record& call);

  call_record* find(graph_id id) const {
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second.get();
  }
  std::size_t size() const { return calls_.size(); }
  bool empty() const { return calls_.empty(); }
  /// With no calls left, frees the table's buckets, which an unordered_map keeps at the most calls it ever
  /// held (a burst of a million would hold 8 MiB of them for good).
  void release_memory() {
    if (calls_.empty()) calls_ = decltype(calls_)();
  }
  /// Every call, for listings. Not to be changed while iterating: collect ids, then act on them.
  const auto& calls() const { return calls_; }

 private:
  void make_ready(call_record& call);
  void settle(call_record& call);
  void settle_now(call_record& call);
  void fail_from_argument(call_record& consumer, const call_record& dep, std::uint32_t position);
  void detach_from_deps(call_record& call);
  void let_go(call_record& call);
  void drop_if_unneeded(call_record& call);
  void maybe_forget(call_record& call);
  void forget(call_record& call);

  host& host_;
  std::unordered_map<graph_id, std::unique_ptr<call_record>> calls_;
  /// Calls whose results exist and whose consumers have not been told yet (see settle).
  std::deque<graph_id> unsettled_;
  bool settling_ = false;
  /// Calls to look at for drop_if_unneeded.
  std::deque<graph_id> unneeded_;
  bool dropping_ = false;
};

}  // namespace ferry::server
