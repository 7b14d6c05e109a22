// Containers for a function: dispatching inputs to them, scaling them with the load, and what happens to an
// input whose attempt fails, times out or will not stop (retries, replacement).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "server/server_state.hpp"

namespace ferry::server {

void server::state::detach_attempt(call_record& in, bool abandon) {
  if (!in.container) return;
  if (abandon) {
    in.container->in_flight[in.attempt_id] = nullptr;
  } else {
    in.container->in_flight.erase(in.attempt_id);
  }
  in.container = nullptr;
}

void server::state::retry_or_fail(call_record& in, wire::error_record error) {
  function_state& fn = *in.function;
  in.timer.reset();
  if (!in.cancelled && !stopping && !fn.app->stopped && in.attempts <= fn.retries.max_retries) {
    const auto delay = retry_delay(fn.retries, in.attempts);
    spdlog::info("call {} of '{}' failed (attempt {} of {}): {}; retrying in {} ms", in.call_id, fn.name, in.attempts,
                 fn.retries.max_retries + 1, error.message, delay.count());
    in.state = call_state::backoff;
    in.timer = std::make_unique<asio::steady_timer>(io, delay);
    in.timer->async_wait([this, id = in.id](boost::system::error_code ec) {
      if (ec) return;
      call_record* retry = graph.find(id);
      if (!retry || retry->state != call_state::backoff) return;
      ready(*retry);
    });
    return;
  }
  error.message = last_attempt_failed(fn, in.attempts, error.message);
  fail(in, error);
}

void server::state::time_out(std::uint64_t input_id, std::uint64_t attempt_id) {
  call_record* found = graph.find(input_id);
  if (!found) return;
  call_record& in = *found;
  if (in.state != call_state::running || in.attempt_id != attempt_id || !in.container) return;
  function_state& fn = *in.function;
  container_record& c = *in.container;
  spdlog::warn("call {} of '{}' timed out after {} ms (attempt {})", in.call_id, fn.name, fn.timeout.count(),
               in.attempts);
  // The body is asked to stop; its slot stays taken until it does (or its container is replaced).
  if (c.session) c.session->connection->send(message_kind::cancel_input, wire::cancel_input_header{attempt_id});
  await_attempt_stop(c, attempt_id);
  detach_attempt(in, /*abandon=*/true);
  retry_or_fail(in, {status::timed_out, "",
                     "'" + fn.name + "' timed out: an attempt may run " + std::to_string(fn.timeout.count()) +
                         " ms (the function's timeout option) (call " + in.call_id + ")",
                     fn.name, in.call_id, ""});
}

void server::state::await_attempt_stop(container_record& c, std::uint64_t attempt_id) {
  auto& timer = c.stopping_attempts[attempt_id];
  if (timer) return;
  timer = std::make_unique<asio::steady_timer>(io, options.cancel_grace);
  timer->async_wait([this, container_id = c.id, attempt_id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(container_id);
    if (it == containers.end() || !it->second->in_flight.contains(attempt_id)) return;
    replace_container(*it->second, "attempt " + std::to_string(attempt_id) + " did not stop within " +
                                       std::to_string(options.cancel_grace.count()) + " ms of being cancelled");
  });
}

void server::state::replace_container(container_record& c, const std::string& why) {
  if (c.replaced || c.state == container_state::stopping) return;
  spdlog::warn("replacing container {} of '{}': {}", c.id, c.function->name, why);
  c.replaced = true;
  c.stop_requested = true;
  c.state = container_state::stopping;
  // A cancelled input that would not stop ends now, as cancelled; the exit re-queues the others.
  std::vector<call_record*> cancelled;
  for (auto& [attempt, in] : c.in_flight) {
    if (in && in->cancelled) cancelled.push_back(in);
  }
  for (call_record* in : cancelled) {
    fail(*in, {status::cancelled, "",
               "'" + in->function->name + "' was cancelled (call " + in->call_id +
                   "); its body did not stop within the grace period, so its container was replaced",
               in->function->name, in->call_id, ""});
  }
  c.process->kill();
}

void start_attempt(call_record& in, container_record& c, std::uint64_t attempt_id) {
  in.state = call_state::running;
  in.container = &c;
  in.container_id = c.id;
  in.attempt_id = attempt_id;
  ++in.attempts;
  c.in_flight.emplace(attempt_id, &in);
  c.idle_since.reset();
}

container_record* least_loaded_ready(const function_state& fn) {
  container_record* target = nullptr;
  for (container_record* c : fn.containers) {
    if (c->state != container_state::ready || c->in_flight.size() >= static_cast<std::size_t>(fn.max_inputs)) continue;
    if (!target || c->in_flight.size() < target->in_flight.size()) target = c;
  }
  return target;
}

void server::state::dispatch(function_state& fn) {
  if (stopping) {
    // Draining: nothing new starts, and containers stop as their running inputs finish.
    for (container_record* c : std::vector<container_record*>(fn.containers)) {
      if (c->state == container_state::ready && c->in_flight.empty()) stop_container(*c);
    }
    return;
  }
  load_backlog(fn);
  while (!fn.queue.empty()) {
    container_record* target = least_loaded_ready(fn);
    if (!target) break;
    call_record& in = *fn.queue.front();
    const std::uint64_t attempt_id = next_input_id++;
    bool sent = false;
    try {
      sent = target->session->connection->send(
          message_kind::input, wire::input_header{attempt_id, in.call_id},
          [&](detail::buffer& out) { out.append(in.arguments.data(), in.arguments.size()); });
    } catch (const PayloadTooLargeError& e) {
      fail(in, {status::payload_too_large, "", e.what(), fn.name, in.call_id, ""});
      continue;
    }
    if (!sent) {  // the container's connection just closed; its exit will be handled shortly
      target->state = container_state::stopping;
      continue;
    }
    fn.queue.pop_front();
    start_attempt(in, *target, attempt_id);
    if (fn.timeout.count() > 0) {
      in.timer = std::make_unique<asio::steady_timer>(io, fn.timeout);
      in.timer->async_wait([this, id = in.id, attempt_id](boost::system::error_code ec) {
        if (!ec) time_out(id, attempt_id);
      });
    }
  }
  scale(fn);
}

void server::state::scale(function_state& fn) {
  if (stopping) return;
  if (fn.app->stopped) {  // retired: its containers stop once idle
    for (container_record* c : std::vector<container_record*>(fn.containers)) {
      if (c->state == container_state::ready && c->in_flight.empty()) stop_container(*c);
    }
    return;
  }
  std::size_t live = 0;
  std::size_t busy = 0;  // slots taken on containers that take inputs
  for (container_record* c : fn.containers) {
    if (c->state == container_state::stopping) continue;
    ++live;
    busy += c->in_flight.size();
    if (c->state == container_state::ready && c->in_flight.empty()) {
      if (!c->idle_since) c->idle_since = std::chrono::steady_clock::now();
      if (!c->idle_timer) arm_idle_timer(*c);
    }
  }
  const std::size_t per_container = static_cast<std::size_t>(fn.max_inputs);
  std::size_t wanted = (fn.queue.size() + busy + per_container - 1) / per_container;
  if (wanted > 0) wanted += static_cast<std::size_t>(fn.buffer_containers);
  wanted = std::clamp(wanted, static_cast<std::size_t>(fn.min_containers), static_cast<std::size_t>(fn.max_containers));
  if (wanted <= live) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < fn.next_launch) {  // backing off after crashes: come back when the wait is over
    if (!fn.launch_timer) {
      fn.launch_timer = std::make_unique<asio::steady_timer>(io, fn.next_launch);
      fn.launch_timer->async_wait([this, &fn](boost::system::error_code ec) {
        if (ec) return;
        fn.launch_timer.reset();
        scale(fn);
      });
    }
    return;
  }
  for (std::size_t i = live; i < wanted; ++i) {
    const std::size_t before = fn.containers.size();
    launch_container(fn);
    if (fn.containers.size() == before) break;  // it could not start; the queue has been failed
  }
}

void server::state::arm_idle_timer(container_record& c) {
  c.idle_timer = std::make_unique<asio::steady_timer>(io, *c.idle_since + c.function->scaledown_window);
  c.idle_timer->async_wait([this, id = c.id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(id);
    if (it == containers.end()) return;
    container_record& idle = *it->second;
    function_state& fn = *idle.function;
    idle.idle_timer.reset();  // (the handler has been moved out of it)
    if (idle.state != container_state::ready || !idle.in_flight.empty() || !idle.idle_since) {
      return;  // busy: armed again when it next becomes idle
    }
    if (std::chrono::steady_clock::now() < *idle.idle_since + fn.scaledown_window) {
      return arm_idle_timer(idle);  // it worked meanwhile and is idle again: wait for the rest of its window
    }
    std::size_t live = 0;
    for (container_record* c : fn.containers) live += c->state != container_state::stopping;
    if (!fn.queue.empty() || live <= static_cast<std::size_t>(fn.min_containers)) {
      idle.idle_since = std::chrono::steady_clock::now();
      return arm_idle_timer(idle);  // kept (min_containers): look again after another window
    }
    spdlog::debug("container {} of '{}' idle for {} ms: stopping it", idle.id, fn.name, fn.scaledown_window.count());
    stop_container(idle);
  });
}

void server::state::launch_container(function_state& fn) {
  auto c = std::make_unique<container_record>();
  c->id = next_container_id++;
  c->function = &fn;
  c->started_at = std::chrono::steady_clock::now();
  container_spec spec{c->id,   fn.app->executable, fn.app->arguments, fn.app->declared_name, fn.name,
                      address, options.token};
  try {
    c->process = launcher->launch(
        spec, [this, id = c->id](container_exit exit) { on_container_exit(id, exit); },
        [this, id = c->id](int stream, std::string_view chunk) { on_container_output(id, stream, chunk); });
  } catch (const std::exception& e) {
    spdlog::error("cannot start a container for {}.{}: {}", fn.app->name, fn.name, e.what());
    if (fn.containers.empty()) {
      const std::string message = "could not start a container for '" + fn.name + "': " + e.what();
      fail_queue(fn, status::container_start_failed, message);
    }
    return;
  }
  spdlog::debug("started container {} (pid {}) for {}.{}", c->id, c->process->pid(), fn.app->name, fn.name);
  c->connect_timer = std::make_unique<asio::steady_timer>(io, options.container_connect_timeout);
  c->connect_timer->async_wait([this, id = c->id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(id);
    if (it == containers.end() || it->second->state != container_state::starting) return;
    spdlog::warn("container {} did not connect within {} ms; killing it", id,
                 options.container_connect_timeout.count());
    it->second->connect_timed_out = true;
    it->second->process->kill();
  });
  fn.containers.push_back(c.get());
  containers.emplace(c->id, std::move(c));
}

void server::state::on_container_exit(std::uint64_t container_id, const container_exit& exit) {
  const std::string& how = exit.how;
  auto it = containers.find(container_id);
  if (it == containers.end()) return;
  std::unique_ptr<container_record> c = std::move(it->second);
  containers.erase(it);
  function_state& fn = *c->function;
  std::erase(fn.containers, c.get());
  for (int stream = 0; stream < 2; ++stream) {  // a last line without its newline
    if (!c->partial_line[stream].empty()) {
      add_log_line(*c, static_cast<wire::log_stream>(stream + 1), c->partial_line[stream]);
    }
  }
  if (!c->stop_requested && !stopping) {
    // Died without being asked to: from the second in a row, starts back off (see crash_backoff).
    ++fn.crash_streak;
    if (const auto wait = crash_backoff(fn.crash_streak); wait.count() > 0) {
      fn.next_launch = std::chrono::steady_clock::now() + wait;
      warn_repeating(
          "crash loop " + fn.app->name + "." + fn.name,
          fmt::format("'{}' has lost {} containers in a row; the next starts in {} ms", fn.name, fn.crash_streak,
                      wait.count()),
          fmt::format("times '{}' lost containers in a row (its starts back off, up to 30 s apart)", fn.name));
    }
  }

  if (c->state == container_state::starting) {
    warn_repeating("lost " + fn.app->name + "." + fn.name,
                   fmt::format("container {} for {}.{} {} before it connected", c->id, fn.app->name, fn.name, how),
                   fmt::format("containers of {}.{} ended unasked (ferry ps, ferry logs)", fn.app->name, fn.name));
    // With no other container on the way, nothing would run what is queued. A start killed from outside
    // (kill -9, the OOM killer) may well succeed next time: it costs the queued inputs an attempt each. A
    // binary that cannot start (it exits, or faults, before connecting; or never connects) fails them now.
    if (fn.containers.empty()) {
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
      warn_repeating("lost " + fn.app->name + "." + fn.name,
                     fmt::format("container {} for {}.{} {} with {} in flight", c->id, fn.app->name, fn.name, how,
                                 plural(running, "input")),
                     fmt::format("containers of {}.{} ended unasked (ferry ps, ferry logs)", fn.app->name, fn.name));
    } else if (!c->stop_requested) {
      spdlog::debug("container {} for {}.{} {}", c->id, fn.app->name, fn.name, how);
    }
    auto in_flight = std::move(c->in_flight);
    c->in_flight.clear();
    for (auto& [attempt, in] : in_flight) {
      if (!in) continue;  // an attempt given up on already
      in->container = nullptr;
      if (stopping) {
        fail(*in, {status::server_shutdown, "", "the ferry server shut down before '" + fn.name + "' finished", fn.name,
                   in->call_id, ""});
      } else if (c->replaced && !fn.app->stopped) {
        // Not this input's fault: it runs again, and this attempt does not count.
        --in->attempts;
        in->timer.reset();
        in->state = call_state::queued;
        fn.queue.push_front(in);
      } else {
        retry_or_fail(*in, {status::container_crashed, "",
                            "the container running '" + fn.name + "' (call " + in->call_id + ") " + how +
                                " before the call finished" + tail_note(c->stderr_of(in->call_id)),
                            fn.name, in->call_id, ""});
      }
    }
  }
  if (c->session) {
    c->session->container = nullptr;
    c->session->connection->close("container exited");
  }
  if (!stopping) dispatch(fn);
  finish_stop_if_done();
}

void server::state::charge_start_to_queue(function_state& fn, const std::string& message) {
  // Those with retries left wait for the next start (which backs off while starts keep dying).
  auto queue = std::move(fn.queue);
  fn.queue.clear();
  std::vector<std::uint64_t> out_of_retries;
  for (call_record* in : queue) {
    if (++in->attempts <= fn.retries.max_retries) {
      fn.queue.push_back(in);
    } else {
      in->state = call_state::waiting;  // out of the queue
      out_of_retries.push_back(in->id);
    }
  }
  fail_each(out_of_retries, [&](const call_record& in) {
    return wire::error_record{
        status::container_start_failed, "", last_attempt_failed(fn, in.attempts, message), fn.name, in.call_id, ""};
  });
}

void server::state::fail_each(const std::vector<std::uint64_t>& ids,
                              const std::function<wire::error_record(const call_record&)>& error) {
  // (By id: failing one may cancel and forget another, through the calls they feed.)
  for (std::uint64_t id : ids) {
    call_record* in = graph.find(id);
    if (!in || in->state == call_state::done) continue;
    fail(*in, error(*in));
  }
}

void server::state::stop_container(container_record& c) {
  if (c.state == container_state::ready && c.session) c.session->connection->close("container stopped by the server");
  c.state = container_state::stopping;
  c.stop_requested = true;
  terminate_container(c);
}

void server::state::terminate_container(container_record& c) {
  c.process->terminate();
  if (c.kill_timer) return;  // asked already: the first request's deadline stands
  c.kill_timer = std::make_unique<asio::steady_timer>(io, options.stop_grace);
  c.kill_timer->async_wait([this, id = c.id](boost::system::error_code ec) {
    if (ec) return;  // (the record went with the process's exit)
    auto it = containers.find(id);
    if (it == containers.end()) return;
    spdlog::warn("container {} of '{}' (pid {}) did not exit within {} ms of being asked to stop; killing it", id,
                 it->second->function->name, it->second->process->pid(), options.stop_grace.count());
    it->second->process->kill();
  });
}

void server::state::fail_queue(function_state& fn, status code, const std::string& message) {
  std::vector<std::uint64_t> queued;
  for (call_record* in : fn.queue) {
    in->state = call_state::waiting;  // out of the queue, all at once
    queued.push_back(in->id);
  }
  fn.queue.clear();
  fail_each(queued,
            [&](const call_record& in) { return wire::error_record{code, "", message, fn.name, in.call_id, ""}; });
}

}  // namespace ferry::server
