// The scheduler: containers for each function, and the calls that run in them. It queues calls that are
// ready, dispatches them to containers with a free slot, starts containers as the load needs (within each
// function's minimum, buffer and maximum) and stops those idle past the scale-down window, times attempts
// out, retries failed ones after their delay, backs container starts off while they keep dying, and decides
// what a container's exit means for the attempts it ran. It owns the containers; time comes from a clock and
// processes from a launcher, both injected, and what it needs of the rest of the server (sending to a
// container, its output, warnings) from its host: tests/server/scheduler_test.cpp drives it with fakes of
// all three.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "server/apps.hpp"
#include "server/call_graph.hpp"
#include "server/clock.hpp"
#include "server/container_launcher.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

struct session;

enum class container_state { starting, ready, stopping };
inline constexpr const char* container_state_names[] = {"starting", "ready", "stopping"};
inline const char* to_string(container_state s) { return container_state_names[static_cast<int>(s)]; }

struct container_record {
  container_id id{};
  function_state* function = nullptr;
  std::unique_ptr<container_process> process;
  container_state state = container_state::starting;
  std::string credential;  // what it presents when it connects (container_spec::credential)
  clock::time_point started_at;
  /// Attempts running here, by attempt id. nullptr: an attempt given up on (timed out) that still holds
  /// its slot until the container answers it, or is replaced.
  std::unordered_map<attempt_id, call_record*> in_flight;
  /// Attempts asked to stop (cancelled, timed out), each with the grace period it has left.
  std::unordered_map<attempt_id, std::unique_ptr<clock::timer>> stopping_attempts;
  bool stop_requested = false;     // the server stopped it (scale-down, shutdown, replacement): not a crash
  bool replaced = false;           // killed for an attempt that would not stop: its other inputs are re-queued
  bool connect_timed_out = false;  // killed because it did not connect in time: a failed start
  std::unique_ptr<clock::timer> connect_timer;
  /// Armed when the server asks it to exit (SIGTERM): it is killed if it has not exited `stop_grace` later.
  std::unique_ptr<clock::timer> kill_timer;
  /// Since when it has had nothing to do (unset while busy). Its scale-down timer is armed when it becomes
  /// idle and left alone while it works, so that a busy container costs no timer operations per input.
  std::optional<clock::time_point> idle_since;
  std::unique_ptr<clock::timer> idle_timer;

  // The network's and observation's (server.cpp, observation.cpp); the scheduler does not read them.
  struct session* session = nullptr;  // its connection, once it has connected
  std::uint64_t drained_at_read = 0;  // the connection's reads_completed() when its pipes were last drained
  /// A remote container's outputs, held until its agent has sent the lines written before them
  /// (server::state::on_output); while drain_pending, the agent has been asked.
  struct held_output {
    attempt_id attempt{};
    wire::status outcome{};
    wire::payload payload;
  };
  std::deque<held_output> held_outputs;
  bool drain_pending = false;
  std::string partial_line[2];  // what it wrote to stdout / stderr after its last newline
  /// The last lines it wrote to stderr, each with the call it was written for ("" for none), for the
  /// error that reports its crash.
  std::deque<std::pair<std::string, std::string>> recent_stderr;
  static constexpr std::size_t recent_stderr_lines = 30;
  /// The recent stderr lines of call `call_id` and of no call (those a crash writes), as text; "" for all.
  std::string stderr_of(const std::string& call_id) const;
  /// The calls of the last attempts here to end, by attempt id: a line tagged with one of them that arrives
  /// after it ended still names its call. (A remote container's output comes over its agent's connection,
  /// which is not ordered with the container's own.) A ring, whose strings keep their capacity: recording
  /// an end allocates nothing once it has gone round.
  struct ended_attempt {
    attempt_id attempt{};
    std::string call_id;
  };
  std::array<ended_attempt, 16> ended_attempts;
  std::size_t next_ended = 0;
  void attempt_ended(attempt_id attempt, const std::string& call_id) {
    ended_attempt& e = ended_attempts[next_ended++ % ended_attempts.size()];
    e.attempt = attempt;
    e.call_id = call_id;
  }
  /// The call attempt `attempt` ran, if it is among the last to end; null if not.
  const std::string* ended_call(attempt_id attempt) const {
    for (const auto& e : ended_attempts) {
      if (e.attempt == attempt && !e.call_id.empty()) return &e.call_id;
    }
    return nullptr;
  }

  /// Attempts it runs (not counting those given up on that still hold a slot).
  std::size_t running_inputs() const {
    std::size_t n = 0;
    for (const auto& [attempt, in] : in_flight) n += in != nullptr;
    return n;
  }
};

struct scheduler_options {
  std::chrono::milliseconds cancel_grace{5'000};  // for a cancelled attempt to stop before its container is replaced
  std::chrono::milliseconds stop_grace{5'000};    // for a container asked to exit before it is killed
  std::chrono::milliseconds connect_timeout{30'000};  // for a started container to connect
  std::string server_address;                         // where containers connect: unix:PATH or host:port
  std::string server_cert;  // the pin of its TLS certificate ("": it listens on loopback only)
};

class scheduler {
 public:
  /// What the scheduler asks of the server around it.
  class host {
   public:
    /// Sends attempt `attempt` of `call` to container `c`. False when its connection has just closed
    /// (its exit comes shortly). Throws PayloadTooLargeError when the input exceeds the frame limit.
    virtual bool send_input(container_record& c, attempt_id attempt, const call_record& call) = 0;
    /// Asks container `c` to stop attempt `attempt` (cancelled, or out of time), if it is connected.
    virtual void send_cancel(container_record& c, attempt_id attempt) = 0;
    /// Closes container `c`'s connection, if it has one; `c.session` is null afterwards.
    virtual void disconnect(container_record& c, const std::string& why) = 0;
    /// `fn`'s queue has room: calls that wait elsewhere (spawned calls in the store) may join it now.
    virtual void refill(function_state& fn) = 0;
    /// Container `c` wrote `chunk` to stdout (1) or stderr (2).
    virtual void output(container_record& c, int stream, std::string_view chunk) = 0;
    /// Container `c`'s process has exited; its attempts are still in `c.in_flight`. Called before the
    /// scheduler deals with them, and before `c` goes.
    virtual void exiting(container_record& c) = 0;
    /// A container has gone (the stop of the server, or of an app, may be complete).
    virtual void exited() = 0;
    /// `fn.unplaced_containers` has changed from `was`: more (or fewer) hosts are wanted.
    virtual void unplaced(function_state& fn, std::size_t was) = 0;
    /// A warning that may repeat many times over: logged once per `key` and window, then counted.
    virtual void warn_repeating(const std::string& key, const std::string& message, const std::string& repeated) = 0;

   protected:
    ~host() = default;
  };

  using container_map = std::unordered_map<container_id, std::unique_ptr<container_record>>;

  scheduler(host& h, call_graph& graph, clock& time, container_launcher& launcher, scheduler_options options);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  const container_map& containers() const { return containers_; }
  container_record* find(container_id id) const;

  /// `call` may run (the call graph says its arguments have arrived): it joins its function's queue.
  void enqueue(call_record& call);
  /// `call` ended, in state `was`: it leaves the queue, or lets go of its container's slot.
  void ended(call_record& call, call_state was);
  /// Starts what is queued on containers with room, then scales the function's containers.
  void dispatch(function_state& fn);
  /// Starts containers for the queued and running calls (plus the buffer, at least the minimum, at most the
  /// maximum), and arms the scale-down of idle ones. A stopped app's idle containers stop.
  void scale(function_state& fn);

  /// Container `id` has connected, presenting `credential`: it takes inputs from now on. Null when no
  /// container of that id is starting with that credential (a late container, from before a restart, or a
  /// forged connection).
  container_record* connected(container_id id, const std::string& credential);
  /// Container `c`'s connection has closed: it is made to exit; its exit fails or retries its attempts.
  void disconnected(container_record& c);

  /// What container `c` answering attempt `attempt` with `outcome` means.
  struct answer {
    bool known = false;           // false: `c` runs no such attempt (a protocol error)
    call_record* call = nullptr;  // null for an attempt given up on, whose late answer frees its slot only
  };
  /// Frees the attempt's slot; the caller then completes, fails or retries the call, and dispatches.
  answer answered(container_record& c, attempt_id attempt, wire::status outcome);
  /// After a failed attempt (let go of by `answered`): queues another after the retry delay, or fails the
  /// call with `error`, saying how many attempts it had.
  void retry_or_fail(call_record& call, wire::error_record error);
  /// The running `call`'s body took a tail call of its own function in its container, with `arguments`
  /// (wire tail_hop). Each hop is a call of its own: a retry runs from it, and the timeout and the retries
  /// start over.
  void tail_hopped(call_record& call, std::span<const char> arguments);
  /// Asks the container running `call` to stop it; one that has not within the cancel grace is replaced.
  void cancel_running(call_record& call);

  /// Fails every call in `fn`'s queue with `code` and `message`.
  void fail_queue(function_state& fn, wire::status code, const std::string& message);
  /// Moves `from`'s queue to `to` (a redeployment's version of the function) and dispatches it there.
  void move_queue(function_state& from, function_state& to);
  /// Stops `fn`'s containers: all of them, or only those idle now (busy ones stop once idle, their app
  /// being stopped).
  void stop_containers(function_state& fn, bool idle_only);
  /// The server is stopping: nothing new starts; idle containers stop now, busy ones once idle, or after
  /// `drain_timeout` at the latest; those that do not exit within the stop grace after that are killed.
  void drain(std::chrono::milliseconds drain_timeout);
  bool draining() const { return draining_; }

 private:
  void start_attempt(call_record& call, container_record& c, attempt_id attempt);
  /// Times the running attempt of `call` out after its function's timeout (if it has one), from now.
  void arm_timeout(call_record& call);
  /// Ends the running attempt's hold on its container (the slot stays taken when `abandon`, until the
  /// container answers or is replaced).
  void detach_attempt(call_record& call, bool abandon);
  void time_out(graph_id call, attempt_id attempt);
  /// Gives a container `cancel_grace` to stop an attempt; after that it is replaced.
  void await_attempt_stop(container_record& c, attempt_id attempt);
  void replace_container(container_record& c, const std::string& why);
  enum class launch_result { started, no_capacity, failed };
  launch_result launch_container(function_state& fn);
  /// No host has room for `n` of `fn`'s containers: stops up to `n` idle containers of other functions (not
  /// below their minimum), whose room `fn`'s take once they have exited. Waiting work comes before warm
  /// containers that wait for work.
  void reclaim_idle(const function_state& fn, std::size_t n);
  /// No host has room for `n` of `fn`'s containers (`why`): they wait, and idle ones make room.
  void wait_for_host(function_state& fn, std::size_t n, const std::string& why);
  /// `n` of `fn`'s containers wait for a host, for reason `why` (see function_state::unplaced_containers).
  void set_unplaced(function_state& fn, std::size_t n, const std::string& why);
  void on_exit(container_id id, const container_exit& exit);
  /// A container of `fn` died before it connected, killed from outside, and no other is on the way: each
  /// queued call counts that as a failed attempt, under its retry policy; those out of retries fail.
  void charge_start_to_queue(function_state& fn, const std::string& message);
  void arm_idle_timer(container_record& c);
  void stop_container(container_record& c);
  /// Sends SIGTERM, and SIGKILL `stop_grace` later if the process has not exited by then (a container that
  /// is frozen, SIGSTOP say, cannot act on SIGTERM, and would otherwise stay, `stopping`, for ever).
  void terminate_container(container_record& c);
  /// Fails the calls `ids` that still exist and have not ended, each with `error(call)`.
  void fail_each(const std::vector<graph_id>& ids, const std::function<wire::error_record(const call_record&)>& error);

  host& host_;
  call_graph& graph_;
  clock& clock_;
  container_launcher& launcher_;
  scheduler_options options_;
  container_map containers_;
  std::uint64_t next_container_ = 1;
  std::uint64_t attempts_started_ = 0;  // the last attempt_id given
  bool draining_ = false;
  std::unique_ptr<clock::timer> drain_timer_;
};

}  // namespace ferry::server
