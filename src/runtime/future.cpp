// The call behind a ferry::Future: submitted lazily, at most once, with the flags its uses need.
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <ferry/future.hpp>
#include <mutex>
#include <utility>

#include "container/current.hpp"
#include "runtime/process_client.hpp"
#include "wire/connection.hpp"

namespace ferry::detail {

class future_state : public std::enable_shared_from_this<future_state> {
 public:
  future_state(std::shared_ptr<const function_entry> f, buffer a, std::vector<future_dependency> d)
      : function(std::move(f)),
        arguments(std::move(a)),
        deps(std::move(d)),
        parent_input(container::current_input_id()) {}
  ~future_state() {
    // The server keeps a submitted call's result for this program until it lets go of it.
    if (client && !handed_over) {
      try {
        client->release(call_id);
      } catch (...) {
      }
    }
    // A chain of futures not yet submitted (each the argument of the next) would be destroyed by recursion
    // as deep as the chain: take over the deps of every state this one is the last owner of, and let them go
    // one at a time.
    std::vector<std::shared_ptr<future_state>> orphans;
    orphans.reserve(deps.size());
    for (auto& [position, dep] : deps) orphans.push_back(std::move(dep));
    while (!orphans.empty()) {
      std::shared_ptr<future_state> last = std::move(orphans.back());
      orphans.pop_back();
      if (last.use_count() == 1) {  // only we hold it: nobody else can reach it to add an owner
        for (auto& [position, dep] : last->deps) orphans.push_back(std::move(dep));
        last->deps.clear();
      }
    }
  }

  const std::shared_ptr<const function_entry> function;
  buffer arguments;  // guarded by mu once shared: a tail call that runs in its container takes them
  /// The argument calls, until this call is submitted (the server has their results from then on).
  /// Guarded by mu.
  std::vector<future_dependency> deps;
  const std::uint64_t parent_input;  // the input whose body made the future (submitted later, maybe elsewhere)

  std::mutex mu;
  std::condition_variable changed;
  std::shared_ptr<client::client> client;  // set once submitted; guarded by mu
  std::uint64_t call_id = 0;               // guarded by mu
  bool delivering = false;                 // the result comes to this program; guarded by mu
  bool run_called = false;                 // guarded by mu
  bool handed_over = false;                // guarded by mu
  bool ran_in_container = false;           // a tail call run in the slot of the body that returned it; guarded by mu
  /// Submitted as another call's argument (or handed over as a tail call): something besides this program's
  /// waits needs it, so a cancelled await does not cancel it. Guarded by mu.
  bool passed = false;
  int awaiting = 0;          // blocking result() calls and awaits under way; guarded by mu
  bool done = false;         // guarded by mu
  std::exception_ptr error;  // guarded by mu
  buffer result;             // guarded by mu
  std::vector<std::function<void(std::exception_ptr, const buffer&)>> waiters;  // guarded by mu

  /// Submits the call if it has not been (its argument futures first), asking for delivery when `deliver`.
  /// Requires mu.
  void submit(bool deliver) {
    if (!function) {  // a ready value, no call behind it
      if (!deliver) throw Error("a future made from a value cannot be passed as an argument; pass the value");
      return;
    }
    if (ran_in_container) {
      throw Error("the future of '" + function->name +
                  "' was returned as a tail call and ran in its container already; make a fresh one to call it again");
    }
    if (client) {
      if (deliver && !delivering) {
        delivering = true;
        client->await_call(call_id, function->name, completion());
      }
      return;
    }
    submit_arguments();
    std::vector<wire::dependency> wire_deps;
    wire_deps.reserve(deps.size());
    for (const auto& [position, dep] : deps) wire_deps.emplace_back(position, submitted_id(*dep));
    auto c = runtime::require_client(function->name);
    const std::uint8_t flags = wire::keep_result | (deliver ? wire::deliver_result : 0);
    call_id = c->submit({*function, [this](buffer& out) { out.append(arguments.data(), arguments.size()); },
                         std::move(wire_deps), flags, parent_input},
                        deliver ? completion() : client::call_callback{});
    client = std::move(c);
    delivering = deliver;
    // The server holds the argument calls for this one now: letting go of them here releases those that
    // nobody else holds (a reduce's earlier steps), so a long chain never lives whole in this program.
    deps.clear();
  }

 private:
  /// Submits, as arguments, every call this one depends on that has not been submitted yet, innermost
  /// first, without recursion: a chain of lazy futures may be as long as a reduce. Requires mu.
  void submit_arguments() {
    struct visit {
      std::shared_ptr<future_state> state;
      std::size_t next_dep = 0;
    };
    std::vector<visit> path;
    std::vector<std::shared_ptr<future_state>> pending_deps;  // (read under each state's own lock)
    auto unsubmitted_deps = [](future_state& state) {
      std::vector<std::shared_ptr<future_state>> out;
      std::lock_guard lock(state.mu);
      if (state.client || !state.function) return out;
      for (const auto& [position, dep] : state.deps) out.push_back(dep);
      return out;
    };
    for (const auto& [position, dep] : deps) {
      path.push_back({dep});
      while (!path.empty()) {
        visit& top = path.back();
        // (Each visit re-reads the deps: cheap, and it never holds two states' locks at once.)
        pending_deps = unsubmitted_deps(*top.state);
        if (top.next_dep < pending_deps.size()) {
          path.push_back({pending_deps[top.next_dep++]});
          continue;
        }
        {
          std::lock_guard lock(top.state->mu);
          top.state->submit(/*deliver=*/false);  // its own deps are submitted: no recursion
        }
        path.pop_back();
      }
    }
  }

  /// The call id of a submitted dependency, which is another call's argument from now on.
  static std::uint64_t submitted_id(future_state& dep) {
    std::lock_guard lock(dep.mu);
    if (!dep.function) throw Error("a future made from a value cannot be passed as an argument; pass the value");
    dep.passed = true;
    return dep.call_id;
  }

  client::call_callback completion() {
    // The pending call keeps the state alive: the last Future may go while the call runs.
    return [self = shared_from_this()](std::exception_ptr e, buffer payload) {
      std::vector<std::function<void(std::exception_ptr, const buffer&)>> ready;
      {
        std::lock_guard lock(self->mu);
        self->done = true;
        self->error = e;
        self->result = std::move(payload);
        ready.swap(self->waiters);
      }
      self->changed.notify_all();
      for (auto& w : ready) w(self->error, self->result);
    };
  }
};

std::shared_ptr<future_state> make_future(std::shared_ptr<const function_entry> function, buffer arguments,
                                          std::vector<future_dependency> deps) {
  return std::make_shared<future_state>(std::move(function), std::move(arguments), std::move(deps));
}

void run_future(future_state& state) {
  std::lock_guard lock(state.mu);
  if (state.run_called || state.delivering || !state.function) {
    throw Error("the future of '" + future_function_name(state) + "' was started already; run() starts a future once");
  }
  state.run_called = true;
  state.submit(/*deliver=*/true);
}

bool future_done(future_state& state) {
  std::lock_guard lock(state.mu);
  return state.done;
}

buffer future_result(future_state& state, const std::source_location& site) {
  runtime::warn_if_blocking_on_loop(future_function_name(state), site);
  std::unique_lock lock(state.mu);
  {
    // Submitting a future submits the futures it takes as arguments first: a whole graph of calls, which
    // leaves in one write.
    wire::send_batch graph;
    state.submit(/*deliver=*/true);
    lock.unlock();
  }
  wire::send_batch::flush_this_thread();  // (within an event loop's batch, the one above does not write)
  lock.lock();
  ++state.awaiting;
  state.changed.wait(lock, [&] { return state.done; });
  --state.awaiting;
  if (state.error) std::rethrow_exception(state.error);
  buffer copy;
  copy.append(state.result.data(), state.result.size());
  return copy;
}

void on_future_result(const std::shared_ptr<future_state>& state,
                      std::function<void(std::exception_ptr, const buffer&)> done) {
  std::unique_lock lock(state->mu);
  state->submit(/*deliver=*/true);
  if (!state->done) {
    // Keep the state alive until the waiter has run.
    state->waiters.push_back([state, done = std::move(done)](std::exception_ptr e, const buffer& b) { done(e, b); });
    return;
  }
  lock.unlock();
  done(state->error, state->result);
}

std::uint64_t submit_as_argument(future_state& state) {
  std::lock_guard lock(state.mu);
  state.submit(/*deliver=*/false);
  state.passed = true;
  return state.call_id;
}

namespace {
/// A tail call runs in the slot of the body that returned it when the container serves its function, and
/// nothing else has a claim on it: never started, no futures among its arguments. Requires state.mu.
bool runs_in_this_slot(const future_state& state, const container::input_context& input) {
  return state.function && !state.client && !state.run_called && state.deps.empty() && input.entry &&
         state.function->name == input.entry->name && state.function->app == input.entry->app;
}
}  // namespace

std::uint64_t hand_over(future_state& state) {
  std::lock_guard lock(state.mu);
  if (state.delivering) {
    throw Error(
        "a future whose result this container awaits cannot be returned as a tail call: return a fresh "
        "f.future(...)");
  }
  if (container::input_context* input = container::current_input(); input && runs_in_this_slot(state, *input)) {
    input->next_hop = std::move(state.arguments);
    state.ran_in_container = true;
    state.handed_over = true;
    return 0;
  }
  state.submit(/*deliver=*/false);
  state.handed_over = true;
  state.passed = true;
  return state.call_id;
}

Task<buffer> await_future(std::shared_ptr<future_state> state) {
  // This await's share of state->awaiting, given back once: when the result comes, or when it is cancelled.
  struct await_share {
    bool held = true;  // guarded by the state's mu
  };
  auto share = std::make_shared<await_share>();
  // (Named, not a temporary in the co_await expression: GCC 12 destroys those twice.)
  const std::function<void(client::call_callback)> start = [&state, &share](client::call_callback done) {
    {
      std::lock_guard lock(state->mu);
      ++state->awaiting;
    }
    on_future_result(state, [state, share, done = std::move(done)](std::exception_ptr error, const buffer& encoded) {
      {
        std::lock_guard lock(state->mu);
        if (std::exchange(share->held, false)) --state->awaiting;
      }
      buffer copy;  // the state keeps its result for other readers
      if (!error) copy.append(encoded.data(), encoded.size());
      done(error, std::move(copy));
    });
  };
  // A cancelled await cancels the call when it was the call's only reason to be: nothing else awaits it and
  // it is no other call's argument (as a Task's await does, and as asyncio cancels an awaited task).
  const std::function<std::string()> on_cancel = [&state, &share] {
    std::string message = "awaiting '" + future_function_name(*state) + "' was cancelled";
    std::shared_ptr<client::client> c;
    std::uint64_t call_id = 0;
    {
      std::lock_guard lock(state->mu);
      if (!std::exchange(share->held, false)) return message;
      if (--state->awaiting == 0 && !state->done && !state->passed && state->delivering) {
        c = state->client;
        call_id = state->call_id;
      }
    }
    if (c) c->cancel(call_id);
    return message;
  };
  co_return co_await runtime::await_io_completion(start, on_cancel);
}

class lazy_call {
 public:
  lazy_call(std::shared_ptr<const function_entry> f, buffer a, std::shared_ptr<future_state> fut)
      : function(std::move(f)), arguments(std::move(a)), future(std::move(fut)) {}

  const std::shared_ptr<const function_entry> function;
  buffer arguments;  // moved into the future when one is made

  std::mutex mu;
  bool awaited = false;                  // guarded by mu
  std::shared_ptr<future_state> future;  // guarded by mu
};

std::shared_ptr<lazy_call> make_lazy_call(std::shared_ptr<const function_entry> function, buffer arguments) {
  return std::make_shared<lazy_call>(std::move(function), std::move(arguments), nullptr);
}

std::shared_ptr<lazy_call> make_lazy_call(std::shared_ptr<future_state> future) {
  auto function = future->function;
  return std::make_shared<lazy_call>(std::move(function), buffer{}, std::move(future));
}

Task<buffer> await_lazy_call(std::shared_ptr<lazy_call> call) {
  std::shared_ptr<future_state> future;
  {
    std::lock_guard lock(call->mu);
    call->awaited = true;
    future = call->future;
  }
  if (future) co_return co_await await_future(future);
  // The direct call: no future, no result kept on the server.
  co_return co_await call_remote_async(
      call->function, [&call](buffer& out) { out.append(call->arguments.data(), call->arguments.size()); });
}

std::shared_ptr<future_state> lazy_call_future(lazy_call& call) {
  std::lock_guard lock(call.mu);
  if (!call.future) {
    if (call.awaited) {
      throw Error("the Task of a call of '" + call.function->name +
                  "' was awaited already, so it cannot be an argument too; pass a Task before awaiting it, or "
                  "use f.future(...), which can be both awaited and passed");
    }
    call.future = make_future(call.function, std::move(call.arguments), {});
  }
  return call.future;
}

const std::string& lazy_call_function_name(const lazy_call& call) { return call.function->name; }

const std::string& future_function_name(const future_state& state) {
  static const std::string value = "(a value)";
  return state.function ? state.function->name : value;
}

std::shared_ptr<future_state> make_ready_future(buffer encoded) {
  auto state = std::make_shared<future_state>(nullptr, buffer{}, std::vector<future_dependency>{});
  state->done = true;
  state->result = std::move(encoded);
  return state;
}

}  // namespace ferry::detail
