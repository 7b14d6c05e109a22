// Containers for a function: dispatching calls to them, scaling them with the load, and what happens to a
// call whose attempt fails, times out or will not stop (retries, replacement).
#include "server/scheduler.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ferry/errors.hpp>

#include "base/check.hpp"
#include "base/secrets.hpp"
#include "server/backoff.hpp"

namespace ferry::server {

using wire::status;

std::string container_record::stderr_of(const std::string& call_id) const {
  std::string text;
  for (const auto& [line_call, line] : recent_stderr) {
    if (call_id.empty() || line_call.empty() || line_call == call_id) text += line + "\n";
  }
  return text;
}

namespace {

/// What a lost container's error adds about its stderr.
std::string tail_note(const std::string& tail) {
  if (tail.empty()) return "; it wrote nothing to stderr";
  return "; its stderr ended with:\n" + tail;
}

/// The ready container of `fn` with the fewest attempts in flight and room for another, or null.
container_record* least_loaded_ready(const function_state& fn) {
  container_record* target = nullptr;
  for (container_record* c : fn.containers) {
    if (c->state != container_state::ready || c->in_flight.size() >= static_cast<std::size_t>(fn.max_inputs)) continue;
    if (!target || c->in_flight.size() < target->in_flight.size()) target = c;
  }
  return target;
}

}  // namespace

scheduler::scheduler(host& h, call_graph& graph, clock& time, container_launcher& launcher, scheduler_options options)
    : host_(h), graph_(graph), clock_(time), launcher_(launcher), options_(std::move(options)) {}

container_record* scheduler::find(container_id id) const {
  auto it = containers_.find(id);
  return it == containers_.end() ? nullptr : it->second.get();
}

void scheduler::enqueue(call_record& call) {
  call.state = call_state::queued;
  call.function->queue.push_back(&call);
  dispatch(*call.function);
}

void scheduler::ended(call_record& call, call_state was) {
  if (was == call_state::queued) std::erase(call.function->queue, &call);
  detach_attempt(call, /*abandon=*/false);
  call.timer.reset();
}

void scheduler::start_attempt(call_record& call, container_record& c, attempt_id attempt) {
  call.state = call_state::running;
  call.container = &c;
  call.last_container = c.id;
  call.attempt_id = attempt;
  ++call.attempts;
  c.in_flight.emplace(attempt, &call);
  c.idle_since.reset();
}

void scheduler::arm_timeout(call_record& call) {
  const auto timeout = call.function->timeout;
  if (timeout.count() > 0) {
    call.timer = clock_.after(timeout, [this, id = call.id, attempt = call.attempt_id] { time_out(id, attempt); });
  }
}

void scheduler::tail_hopped(call_record& call, std::span<const char> arguments) {
  call.arguments = wire::payload::copy_of(arguments);
  call.attempts = 1;
  ++call.tail_hops;
  arm_timeout(call);
}

void scheduler::detach_attempt(call_record& call, bool abandon) {
  if (!call.container) return;
  call.container->attempt_ended(call.attempt_id, call.call_id);
  if (abandon) {
    call.container->in_flight[call.attempt_id] = nullptr;
  } else {
    call.container->in_flight.erase(call.attempt_id);
  }
  call.container = nullptr;
}

void scheduler::dispatch(function_state& fn) {
  if (draining_) {
    // Nothing new starts, and containers stop as their running calls finish.
    stop_containers(fn, /*idle_only=*/true);
    return;
  }
  host_.refill(fn);
  while (!fn.queue.empty()) {
    container_record* target = least_loaded_ready(fn);
    if (!target) break;
    call_record& call = *fn.queue.front();
    const attempt_id attempt{++attempts_started_};
    bool sent = false;
    try {
      sent = host_.send_input(*target, attempt, call);
    } catch (const PayloadTooLargeError& e) {
      graph_.fail(call, {status::payload_too_large, "", e.what(), fn.name, call.call_id, ""});
      continue;
    }
    if (!sent) {  // the container's connection just closed; its exit will be handled shortly
      target->state = container_state::stopping;
      continue;
    }
    fn.queue.pop_front();
    start_attempt(call, *target, attempt);
    arm_timeout(call);
  }
  scale(fn);
}

void scheduler::scale(function_state& fn) {
  if (draining_) return;
  if (fn.app->stopped) return stop_containers(fn, /*idle_only=*/true);  // retired: its containers stop once idle
  std::size_t live = 0;
  std::size_t busy = 0;  // slots taken on containers that take inputs
  for (container_record* c : fn.containers) {
    if (c->state == container_state::stopping) continue;
    ++live;
    busy += c->in_flight.size();
    if (c->state == container_state::ready && c->in_flight.empty()) {
      if (!c->idle_since) c->idle_since = clock_.now();
      if (!c->idle_timer) arm_idle_timer(*c);
    }
  }
  const std::size_t per_container = static_cast<std::size_t>(fn.max_inputs);
  std::size_t wanted = (fn.queue.size() + busy + per_container - 1) / per_container;
  if (wanted > 0) wanted += static_cast<std::size_t>(fn.buffer_containers);
  wanted = std::clamp(wanted, static_cast<std::size_t>(fn.min_containers), static_cast<std::size_t>(fn.max_containers));
  if (wanted <= live) return set_unplaced(fn, 0, "");
  if (clock_.now() < fn.next_launch) {  // backing off after crashes: come back when the wait is over
    if (!fn.launch_timer) {
      fn.launch_timer = clock_.at(fn.next_launch, [this, &fn] {
        fn.launch_timer.reset();
        scale(fn);
      });
    }
    return;
  }
  if (std::string why = launcher_.never_fits(fn.need); !why.empty()) {
    fail_queue(fn, status::container_start_failed, "'" + fn.name + "' cannot run: " + why);
    host_.warn_repeating("never fits " + fn.app->name + "." + fn.name, "'" + fn.name + "' cannot run: " + why,
                         fmt::format("times calls of '{}' failed as no host fits it", fn.name));
    return set_unplaced(fn, 0, "");
  }
  for (std::size_t i = live; i < wanted; ++i) {
    // (Asked first: while work waits for a host, every dispatch comes here, and a launch that throws
    // would cost a record, a credential and an exception each time.)
    if (std::string why = launcher_.no_room(fn.need); !why.empty()) return wait_for_host(fn, wanted - i, why);
    switch (launch_container(fn)) {
      case launch_result::started:
        continue;
      case launch_result::no_capacity:
        return wait_for_host(fn, wanted - i, launcher_.no_room(fn.need));
      case launch_result::failed:  // the queue has been failed
        return set_unplaced(fn, 0, "");
    }
  }
  set_unplaced(fn, 0, "");
}

void scheduler::wait_for_host(function_state& fn, std::size_t n, const std::string& why) {
  // Not a failure: what is queued waits for a host (the server dispatches again when one has room). Said,
  // and room made, when the shortfall changes, not on every dispatch meanwhile.
  if (n != fn.unplaced_containers) {
    host_.warn_repeating("no capacity " + fn.app->name + "." + fn.name,
                         fmt::format("'{}' has calls waiting for a host to run them on: {}; start `ferry agent` on "
                                     "a host that has room (docs/cluster.md)",
                                     fn.name, why),
                         fmt::format("times '{}' waited for a host", fn.name));
    reclaim_idle(fn, n);
  }
  set_unplaced(fn, n, why);
}

void scheduler::reclaim_idle(const function_state& fn, std::size_t n) {
  // Those idle longest first: the container that has just answered is the likeliest to be called next (two
  // functions that take turns on a full host would otherwise stop each other's newest containers).
  std::vector<container_record*> idle;
  for (auto& [id, c] : containers_) {
    if (c->function != &fn && c->state == container_state::ready && c->in_flight.empty() && c->idle_since) {
      idle.push_back(c.get());
    }
  }
  std::sort(idle.begin(), idle.end(), [](const container_record* a, const container_record* b) {
    return *a->idle_since < *b->idle_since;  // NOLINT(bugprone-unchecked-optional-access): checked above
  });
  for (container_record* c : idle) {
    if (n == 0) return;
    function_state& other = *c->function;
    std::size_t live = 0;
    for (const container_record* sibling : other.containers) live += sibling->state != container_state::stopping;
    if (live <= static_cast<std::size_t>(other.min_containers)) continue;  // kept warm on purpose
    spdlog::debug("stopping idle container {} of '{}' to make room for '{}'", c->id, other.name, fn.name);
    stop_container(*c);
    --n;
  }
}

void scheduler::set_unplaced(function_state& fn, std::size_t n, const std::string& why) {
  fn.waiting_for = why;
  if (fn.unplaced_containers == n) return;
  const std::size_t was = fn.unplaced_containers;
  fn.unplaced_containers = n;
  host_.unplaced(fn, was);
}

void scheduler::arm_idle_timer(container_record& c) {
  FERRY_CHECK(c.idle_since, "an idle timer for a busy container");
  c.idle_timer = clock_.at(*c.idle_since + c.function->scaledown_window, [this, &c] {
    function_state& fn = *c.function;
    c.idle_timer.reset();
    if (c.state != container_state::ready || !c.in_flight.empty() || !c.idle_since) {
      return;  // busy: armed again when it next becomes idle
    }
    if (clock_.now() < *c.idle_since + fn.scaledown_window) {
      return arm_idle_timer(c);  // it worked meanwhile and is idle again: wait for the rest of its window
    }
    std::size_t live = 0;
    for (container_record* other : fn.containers) live += other->state != container_state::stopping;
    if (!fn.queue.empty() || live <= static_cast<std::size_t>(fn.min_containers)) {
      c.idle_since = clock_.now();
      return arm_idle_timer(c);  // kept (min_containers): look again after another window
    }
    spdlog::debug("container {} of '{}' idle for {} ms: stopping it", c.id, fn.name, fn.scaledown_window.count());
    stop_container(c);
  });
}

scheduler::launch_result scheduler::launch_container(function_state& fn) {
  auto c = std::make_unique<container_record>();
  c->id = container_id{next_container_++};
  c->function = &fn;
  c->started_at = clock_.now();
  c->credential = random_token();
  const container_spec spec{c->id,
                            fn.app->executable,
                            fn.app->digest,
                            fn.app->arguments,
                            fn.app->declared_name,
                            fn.name,
                            fn.need,
                            options_.server_address,
                            options_.server_cert,
                            c->credential,
                            {}};
  try {
    c->process = launcher_.launch(
        spec, [this, id = c->id](const container_exit& exit) { on_exit(id, exit); },
        [this, id = c->id](int stream, std::string_view chunk) {
          if (container_record* found = find(id)) host_.output(*found, stream, chunk);
        });
  } catch (const no_capacity_error&) {
    return launch_result::no_capacity;
  } catch (const std::exception& e) {
    spdlog::error("cannot start a container for {}.{}: {}", fn.app->name, fn.name, e.what());
    if (fn.containers.empty()) {
      fail_queue(fn, status::container_start_failed, "could not start a container for '" + fn.name + "': " + e.what());
    }
    return launch_result::failed;
  }
  spdlog::debug("started container {} (pid {}) for {}.{}", c->id, c->process->pid(), fn.app->name, fn.name);
  c->connect_timer = clock_.after(options_.connect_timeout, [this, &record = *c] {
    if (record.state != container_state::starting) return;
    spdlog::warn("container {} did not connect within {} ms; killing it", record.id, options_.connect_timeout.count());
    record.connect_timed_out = true;
    record.process->kill();
  });
  fn.containers.push_back(c.get());
  containers_.emplace(c->id, std::move(c));
  return launch_result::started;
}

container_record* scheduler::connected(container_id id, const std::string& credential) {
  container_record* c = find(id);
  if (!c || c->state != container_state::starting || !constant_time_equal(credential, c->credential)) return nullptr;
  c->state = container_state::ready;
  c->connect_timer.reset();
  return c;
}

void scheduler::disconnected(container_record& c) {
  // The process's exit fails or retries its attempts, with its exit status and stderr; make sure it exits.
  c.session = nullptr;
  if (c.state == container_state::ready) c.state = container_state::stopping;
  terminate_container(c);
}

scheduler::answer scheduler::answered(container_record& c, attempt_id attempt, status outcome) {
  auto it = c.in_flight.find(attempt);
  if (it == c.in_flight.end()) return {};
  c.stopping_attempts.erase(attempt);
  call_record* call = it->second;
  if (!call) {  // an attempt given up on: its answer comes too late, but its slot is free again
    c.in_flight.erase(it);
    return {true, nullptr};
  }
  if (outcome == status::ok || outcome == status::tail_call) c.function->crash_streak = 0;
  detach_attempt(*call, /*abandon=*/false);
  return {true, call};
}

void scheduler::retry_or_fail(call_record& call, wire::error_record error) {
  function_state& fn = *call.function;
  call.timer.reset();
  if (!call.cancelled && !draining_ && !fn.app->stopped && call.attempts <= fn.retries.max_retries) {
    const auto delay = retry_delay(fn.retries, call.attempts);
    spdlog::info("call {} of '{}' failed (attempt {} of {}): {}; retrying in {} ms", call.call_id, fn.name,
                 call.attempts, fn.retries.max_retries + 1, error.message, delay.count());
    call.state = call_state::backoff;
    call.timer = clock_.after(delay, [this, id = call.id] {
      call_record* retry = graph_.find(id);
      if (retry && retry->state == call_state::backoff) enqueue(*retry);
    });
    return;
  }
  error.message = last_attempt_failed(fn, call.attempts, error.message);
  graph_.fail(call, error);
}

void scheduler::cancel_running(call_record& call) {
  if (!call.container) return;
  host_.send_cancel(*call.container, call.attempt_id);
  await_attempt_stop(*call.container, call.attempt_id);
}

void scheduler::time_out(graph_id call_id, attempt_id attempt) {
  call_record* found = graph_.find(call_id);
  if (!found) return;
  call_record& call = *found;
  if (call.state != call_state::running || call.attempt_id != attempt || !call.container) return;
  function_state& fn = *call.function;
  spdlog::warn("call {} of '{}' timed out after {} ms (attempt {})", call.call_id, fn.name, fn.timeout.count(),
               call.attempts);
  // The body is asked to stop; its slot stays taken until it does (or its container is replaced).
  cancel_running(call);
  detach_attempt(call, /*abandon=*/true);
  retry_or_fail(call, {status::timed_out, "",
                       "'" + fn.name + "' timed out: an attempt may run " + std::to_string(fn.timeout.count()) +
                           " ms (the function's timeout option) (call " + call.call_id + ")",
                       fn.name, call.call_id, ""});
}

void scheduler::await_attempt_stop(container_record& c, attempt_id attempt) {
  auto& timer = c.stopping_attempts[attempt];
  if (timer) return;
  timer = clock_.after(options_.cancel_grace, [this, &c, attempt] {
    if (!c.in_flight.contains(attempt)) return;
    replace_container(c, "attempt " + std::to_string(number(attempt)) + " did not stop within " +
                             std::to_string(options_.cancel_grace.count()) + " ms of being cancelled");
  });
}

void scheduler::replace_container(container_record& c, const std::string& why) {
  if (c.replaced || c.state == container_state::stopping) return;
  spdlog::warn("replacing container {} of '{}': {}", c.id, c.function->name, why);
  c.replaced = true;
  c.stop_requested = true;
  c.state = container_state::stopping;
  // A cancelled call that would not stop ends now, as cancelled; the exit re-queues the others.
  std::vector<graph_id> cancelled;
  for (auto& [attempt, call] : c.in_flight) {
    if (call && call->cancelled) cancelled.push_back(call->id);
  }
  fail_each(cancelled, [](const call_record& call) {
    return wire::error_record{status::cancelled,
                              "",
                              "'" + call.function->name + "' was cancelled while it ran (call " + call.call_id +
                                  "); its body did not stop within the grace period, so its container was replaced",
                              call.function->name,
                              call.call_id,
                              ""};
  });
  c.process->kill();
}

void scheduler::on_exit(container_id id, const container_exit& exit) {
  const std::string& how = exit.how;
  auto it = containers_.find(id);
  if (it == containers_.end()) return;
  std::unique_ptr<container_record> c = std::move(it->second);
  containers_.erase(it);
  function_state& fn = *c->function;
  std::erase(fn.containers, c.get());
  host_.exiting(*c);
  if (!c->stop_requested && !draining_ && !exit.host_lost) {
    // Died without being asked to: from the second in a row, starts back off (see crash_backoff).
    ++fn.crash_streak;
    if (const auto wait = crash_backoff(fn.crash_streak); wait.count() > 0) {
      fn.next_launch = clock_.now() + wait;
      host_.warn_repeating(
          "crash loop " + fn.app->name + "." + fn.name,
          fmt::format("'{}' has lost {} containers in a row; the next starts in {} ms", fn.name, fn.crash_streak,
                      wait.count()),
          fmt::format("times '{}' lost containers in a row (its starts back off, up to 30 s apart)", fn.name));
    }
  }

  if (c->state == container_state::starting) {
    host_.warn_repeating(
        "lost " + fn.app->name + "." + fn.name,
        fmt::format("container {} for {}.{} {} before it connected", c->id, fn.app->name, fn.name, how),
        fmt::format("containers of {}.{} ended unasked (ferry ps, ferry logs)", fn.app->name, fn.name));
    // With no other container on the way, nothing would run what is queued. A start killed from outside
    // (kill -9, the OOM killer) may well succeed next time: it costs the queued calls an attempt each. A
    // binary that cannot start (it exits, or faults, before connecting; or never connects) fails them now.
    // A start lost with its host costs nothing: the dispatch below places another.
    if (fn.containers.empty() && !exit.host_lost) {
      const std::string message =
          "could not start a container for '" + fn.name + "': the container process " + how +
          (c->process->reached_main()
               ? " before it connected to the server"
               : " before it reached app.main: the program's main failed before calling app.main (a container "
                 "runs main again, with the program's arguments" +
                     (fn.app->arguments.empty() ? std::string(" (none)") : "") +
                     "; what main does before app.main, it does in every container)") +
          tail_note(c->stderr_of(""));
      if (exit.killed_from_outside() && !c->connect_timed_out && !c->stop_requested) {
        charge_start_to_queue(fn, message);
      } else {
        fail_queue(fn, status::container_start_failed, message);
      }
    }
  } else {
    const std::size_t running = c->running_inputs();
    if (running > 0) {
      host_.warn_repeating(
          "lost " + fn.app->name + "." + fn.name,
          fmt::format("container {} for {}.{} {} with {} in flight", c->id, fn.app->name, fn.name, how,
                      plural(static_cast<std::int64_t>(running), "input")),
          fmt::format("containers of {}.{} ended unasked (ferry ps, ferry logs)", fn.app->name, fn.name));
    } else if (!c->stop_requested) {
      spdlog::debug("container {} for {}.{} {}", c->id, fn.app->name, fn.name, how);
    }
    auto in_flight = std::move(c->in_flight);
    c->in_flight.clear();
    for (auto& [attempt, call] : in_flight) {
      if (!call) continue;  // an attempt given up on already
      call->container = nullptr;
      if (draining_) {
        graph_.fail(*call, {status::server_shutdown, "", "the ferry server shut down before '" + fn.name + "' finished",
                            fn.name, call->call_id, ""});
      } else if ((c->replaced || exit.host_lost) && !fn.app->stopped) {
        // Not this call's fault (its container was replaced, or lost with its host): it runs again, and this
        // attempt does not count.
        --call->attempts;
        call->timer.reset();
        call->state = call_state::queued;
        fn.queue.push_front(call);
      } else {
        retry_or_fail(*call, {status::container_crashed, "",
                              "the container running '" + fn.name + "' (call " + call->call_id + ") " + how +
                                  " before the call finished" + tail_note(c->stderr_of(call->call_id)),
                              fn.name, call->call_id, ""});
      }
    }
  }
  host_.disconnect(*c, "container exited");
  if (!draining_) dispatch(fn);
  host_.exited();
}

void scheduler::charge_start_to_queue(function_state& fn, const std::string& message) {
  // Those with retries left wait for the next start (which backs off while starts keep dying).
  auto queue = std::move(fn.queue);
  fn.queue.clear();
  std::vector<graph_id> out_of_retries;
  for (call_record* call : queue) {
    if (++call->attempts <= fn.retries.max_retries) {
      fn.queue.push_back(call);
    } else {
      call->state = call_state::waiting;  // out of the queue
      out_of_retries.push_back(call->id);
    }
  }
  fail_each(out_of_retries, [&](const call_record& call) {
    return wire::error_record{
        status::container_start_failed, "", last_attempt_failed(fn, call.attempts, message), fn.name, call.call_id, ""};
  });
}

void scheduler::fail_each(const std::vector<graph_id>& ids,
                          const std::function<wire::error_record(const call_record&)>& error) {
  // (By id: failing one may cancel and forget another, through the calls they feed.)
  for (graph_id id : ids) {
    call_record* call = graph_.find(id);
    if (!call || call->state == call_state::done) continue;
    graph_.fail(*call, error(*call));
  }
}

void scheduler::fail_queue(function_state& fn, status code, const std::string& message) {
  std::vector<graph_id> queued;
  for (call_record* call : fn.queue) {
    call->state = call_state::waiting;  // out of the queue, all at once
    queued.push_back(call->id);
  }
  fn.queue.clear();
  fail_each(queued,
            [&](const call_record& call) { return wire::error_record{code, "", message, fn.name, call.call_id, ""}; });
}

void scheduler::move_queue(function_state& from, function_state& to) {
  for (call_record* call : from.queue) {
    call->function = &to;
    to.queue.push_back(call);
  }
  from.queue.clear();
  dispatch(to);
}

void scheduler::stop_containers(function_state& fn, bool idle_only) {
  for (container_record* c : std::vector<container_record*>(fn.containers)) {
    if (!idle_only || (c->state != container_state::stopping && c->in_flight.empty())) stop_container(*c);
  }
}

void scheduler::stop_container(container_record& c) {
  if (c.state == container_state::ready) host_.disconnect(c, "container stopped by the server");
  c.state = container_state::stopping;
  c.stop_requested = true;
  terminate_container(c);
}

void scheduler::terminate_container(container_record& c) {
  c.process->terminate();
  if (c.kill_timer) return;  // asked already: the first request's deadline stands
  c.kill_timer = clock_.after(options_.stop_grace, [this, &c] {
    spdlog::warn("container {} of '{}' (pid {}) did not exit within {} ms of being asked to stop; killing it", c.id,
                 c.function->name, c.process->pid(), options_.stop_grace.count());
    c.process->kill();
  });
}

void scheduler::drain(std::chrono::milliseconds drain_timeout) {
  if (draining_) return;
  draining_ = true;
  for (auto& [id, c] : containers_) {
    if (drain_timeout.count() == 0 || c->in_flight.empty()) stop_container(*c);
  }
  if (drain_timeout.count() > 0 && !containers_.empty()) {
    spdlog::info("draining: {} running call(s) may finish within {} ms", graph_.size(), drain_timeout.count());
  }
  drain_timer_ = clock_.after(drain_timeout, [this] {
    for (auto& [id, c] : containers_) {
      if (c->state != container_state::stopping) stop_container(*c);
    }
    // (Each container stopped is killed if it has not exited within the stop grace.)
  });
}

}  // namespace ferry::server
