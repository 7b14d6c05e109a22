// Control requests: the wire's `request` frames decoded (see detail::control_verb), and the typed service they
// and the HTTP API call: listings, deployments, and durable spawned calls with the state store behind them.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <ferry/detail/control_verb.hpp>
#include <filesystem>
#include <fstream>

#include "server/server_state.hpp"
#include "server/sha256.hpp"

namespace ferry::server {

void server::state::reply(const control_answer& answer, status code,
                          const std::function<void(detail::buffer&)>& write) {
  if (answer.to) {
    detail::buffer payload;
    write(payload);
    answer.to(code, payload.view());
    return;
  }
  auto it = sessions.find(answer.session_id);
  if (it == sessions.end()) return;
  try {
    it->second->connection->send(message_kind::reply,
                                 wire::reply_header{answer.request_id, static_cast<std::uint8_t>(code)}, write);
  } catch (const PayloadTooLargeError& e) {
    reply_error(answer, {status::payload_too_large, "", e.what(), "", "", ""});
  }
}

void server::state::reply_error(const control_answer& answer, const wire::error_record& error) {
  reply(answer, error.code, [&](detail::buffer& out) { wire::encode_error(out, error); });
}

namespace {
void encode_nil(detail::buffer& out) { out.commit(mp_encode_nil(out.reserve(1))); }
}  // namespace

void server::state::on_request(session& s, const wire::frame& f) {
  auto [request_id, verb_name, subject] = f.decode_header<wire::request_header>();
  const auto verb = detail::parse_control_verb(verb_name);
  if (!verb) throw wire::protocol_error("unknown request '" + verb_name + "'");
  const control_answer answer{s.id, request_id, {}};
  const std::span<const char> payload = f.payload;
  using detail::control_verb;
  switch (*verb) {
    case control_verb::containers: {
      const auto rows = container_rows();
      return reply(answer, status::ok,
                   [&](detail::buffer& out) { codec<std::vector<wire::container_row>>::encode(out, rows); });
    }
    case control_verb::apps: {
      std::vector<wire::app_row> rows;
      for (const auto& [name, app] : deployed) {
        std::vector<wire::app_function> functions;
        for (const auto& [fname, fn] : app->functions) functions.emplace_back(fname, fn.signature);
        rows.emplace_back(name, app->digest, app->deployed_at, std::move(functions));
      }
      return reply(answer, status::ok,
                   [&](detail::buffer& out) { codec<std::vector<wire::app_row>>::encode(out, rows); });
    }
    case control_verb::calls: {
      state_store::call_filter filter;
      std::vector<wire::call_row> rows;
      try {
        if (!payload.empty()) {
          detail::reader r{payload};
          std::uint32_t limit = 0;
          std::tie(filter.app, filter.function, filter.status, limit) =
              ferry::decode<std::tuple<std::string, std::string, std::string, std::uint32_t>>(r);
          filter.limit = std::clamp<std::size_t>(limit, 1, 100'000);
        }
        store->flush();
        rows = store->recent_calls(filter);
      } catch (const Error& e) {  // a malformed payload (DecodeError), or an unknown status (ArgumentError)
        return reply_error(answer, {status::bad_arguments, "", e.what(), "", "", ""});
      }
      return reply(answer, status::ok,
                   [&](detail::buffer& out) { codec<std::vector<wire::call_row>>::encode(out, rows); });
    }
    case control_verb::function: {
      function_state* fn = deployed_function(answer, subject, s.app);
      if (!fn) return;
      return reply(answer, status::ok, [&](detail::buffer& out) {
        ferry::encode(out, std::tuple<std::string, std::string>{fn->signature, fn->structs});
      });
    }
    case control_verb::deploy:
      return deploy(answer, subject, payload);
    case control_verb::stop:
      return stop_app(answer, subject);
    case control_verb::spawn: {
      function_state* fn = deployed_function(answer, subject, s.app);
      if (!fn) return;
      // The payload: [idempotency key, arguments]; the arguments stay encoded as they came.
      detail::reader r{payload};
      std::string key;
      const char* arguments = nullptr;
      try {
        if (r.at_end() || mp_typeof(*r.pos) != MP_ARRAY || mp_check_array(r.pos, r.end) > 0 ||
            mp_decode_array(&r.pos) != 2) {
          throw DecodeError("[idempotency key, arguments]", "something else");
        }
        key = ferry::decode<std::string>(r);
        arguments = r.pos;
        if (!detail::skip_value(r) || !r.at_end()) {
          throw DecodeError("[idempotency key, arguments]", "a malformed value");
        }
      } catch (const DecodeError& e) {
        return reply_error(
            answer, {status::bad_arguments, "", std::string("malformed spawn request: ") + e.what(), fn->name, "", ""});
      }
      return spawn(*fn, key, std::span<const char>(arguments, static_cast<std::size_t>(r.pos - arguments)), answer);
    }
    case control_verb::get: {
      detail::reader r{payload};
      std::uint32_t timeout_ms = 0;
      try {
        timeout_ms = ferry::decode<std::uint32_t>(r);
      } catch (const DecodeError& e) {
        return reply_error(answer,
                           {status::bad_arguments, "", std::string("malformed get: ") + e.what(), "", subject, ""});
      }
      return get_call(subject, timeout_ms, answer);
    }
    case control_verb::cancel:
      return cancel_spawned(subject, answer);
    case control_verb::logs:
      return follow_logs(s, answer, subject, payload);
  }
}

std::vector<wire::container_row> server::state::container_rows() const {
  const auto now = std::chrono::steady_clock::now();
  std::vector<wire::container_row> rows;
  for (const auto& [id, c] : sched->containers()) {
    const std::chrono::duration<double> uptime = now - c->started_at;
    rows.emplace_back(c->id, c->function->app->name, c->function->name, to_string(c->state),
                      static_cast<std::uint32_t>(c->running_inputs()), c->process->pid(), uptime.count(),
                      c->process->rss_bytes());
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

void server::state::stop_app(const control_answer& answer, const std::string& name) {
  auto it = deployed.find(name);
  if (it == deployed.end()) {
    return reply_error(
        answer, {status::unknown_app, "", "no app named '" + name + "' is deployed (see `ferry apps`)", "", "", ""});
  }
  auto app = std::move(it->second);
  deployed.erase(it);
  store->remove_deployment(name);
  spdlog::info("stopped app '{}'", name);
  retire(std::move(app), nullptr);
  reply(answer, status::ok, encode_nil);
}

void server::state::cancel_spawned(const std::string& call_id, const control_answer& answer) {
  if (auto it = durable_calls.find(call_id); it != durable_calls.end()) {
    cancel_input(*it->second);
  } else {
    auto stored = store->find_call(call_id);
    if (!stored) {
      return reply_error(answer, {status::unknown_call, "", "no call " + call_id + " on this server", "", call_id, ""});
    }
    if (!stored->finished) {  // in the backlog: it ends before it starts
      detail::buffer error;
      wire::encode_error(error, {status::cancelled, "",
                                 "'" + stored->function + "' was cancelled before it started (call " + call_id + ")",
                                 stored->function, call_id, ""});
      finish_stored(call_id, status::cancelled, error.view());
    }
  }
  reply(answer, status::ok, encode_nil);
}

function_state* server::state::deployed_function(const control_answer& answer, const std::string& qualified,
                                                 app_instance* own) {
  const auto dot = qualified.find('.');
  const std::string app_name = qualified.substr(0, dot);
  const std::string fname = dot == std::string::npos ? "" : qualified.substr(dot + 1);
  app_instance* app = nullptr;
  if (auto it = deployed.find(app_name); it != deployed.end()) {
    app = it->second.get();
  } else if (own && (own->name == app_name || own->declared_name == app_name)) {
    app = own;  // the asking program's own app (a container names it as its binary does)
  }
  if (!app) {
    reply_error(answer, {status::unknown_app, "",
                         "no app named '" + app_name +
                             "' is deployed on this server; deploy it with `ferry deploy ./BINARY` (see `ferry apps`)",
                         fname, "", ""});
    return nullptr;
  }
  auto fn = app->functions.find(fname);
  if (fn == app->functions.end()) {
    reply_error(answer,
                {status::unknown_function, "",
                 "app '" + app_name + "' has no function '" + fname + "' (it has: " + join_names(app->functions) + ")",
                 fname, "", ""});
    return nullptr;
  }
  return &fn->second;
}

void server::state::deploy(const control_answer& answer, const std::string& app_name, std::span<const char> payload) {
  auto refuse_deploy = [&](const std::string& message) {
    reply_error(answer, {status::bad_arguments, "", message, "", "", ""});
  };
  if (options.state_dir.empty()) {
    return refuse_deploy("this server keeps no state (an embedded server): deploy to a `ferry server`");
  }
  detail::reader r{payload};
  std::vector<wire::function_spec> specs;
  ferry::bytes binary;
  std::string declared_name;
  std::vector<std::string> arguments;
  try {
    std::tie(specs, binary, declared_name, arguments) = ferry::decode<
        std::tuple<std::vector<wire::function_spec>, ferry::bytes, std::string, std::vector<std::string>>>(r);
  } catch (const DecodeError& e) {
    return refuse_deploy(std::string("malformed deploy request: ") + e.what());
  }
  if (!wire::valid_name(app_name)) {
    return refuse_deploy("'" + app_name + "' is not a valid app name: use " + wire::name_rule);
  }
  auto app = std::make_unique<app_instance>();
  app->name = app_name;
  app->declared_name = declared_name;
  app->arguments = arguments;
  if (auto problem = add_functions(*app, specs); !problem.empty()) return refuse_deploy(problem);
  const std::span<const char> image(reinterpret_cast<const char*>(binary.data()), binary.size());
  app->digest = sha256_hex(image);
  app->deployed_at = unix_now();
  // Content-addressed: the same binary deployed twice (or under two names) is stored once.
  const auto dir = options.state_dir / "binaries";
  const auto path = dir / app->digest;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::exists(path, ec)) {
    const auto partial = path.string() + ".partial";
    {
      std::ofstream out(partial, std::ios::binary | std::ios::trunc);
      out.write(image.data(), static_cast<std::streamsize>(image.size()));
      if (!out) return refuse_deploy("cannot write " + partial + " on the server");
    }
    std::filesystem::permissions(partial, std::filesystem::perms::owner_all, ec);
    std::filesystem::rename(partial, path, ec);
    if (ec) return refuse_deploy("cannot store the binary on the server: " + ec.message());
  }
  app->executable = path.string();
  detail::buffer encoded_specs;
  codec<std::vector<wire::function_spec>>::encode(encoded_specs, specs);
  store->put_deployment(
      {app_name, declared_name, app->digest, app->deployed_at, std::move(encoded_specs), std::move(arguments)});
  app_instance& fresh = *app;
  std::unique_ptr<app_instance> previous;
  if (auto it = deployed.find(app_name); it != deployed.end()) previous = std::move(it->second);
  deployed[app_name] = std::move(app);
  spdlog::info("deployed app '{}' ({} functions, binary sha256:{})", app_name, fresh.functions.size(),
               fresh.digest.substr(0, 12));
  if (previous) retire(std::move(previous), &fresh);
  for (auto& [fname, fn] : fresh.functions) sched->scale(fn);
  reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, fresh.digest); });
}

void server::state::retire(std::unique_ptr<app_instance> app, app_instance* successor) {
  app->stopped = true;
  for (auto& [fname, fn] : app->functions) {
    function_state* next = nullptr;
    if (successor) {
      auto it = successor->functions.find(fname);
      if (it != successor->functions.end() && same_signature(it->second, fn)) next = &it->second;
    }
    if (next) {
      // Not started yet: the new version runs them, and its backlog in the store.
      next->backlogged = fn.backlogged;
      next->loaded_seq = fn.loaded_seq;
      sched->move_queue(fn, *next);
    } else {
      fail_backlog(fn, "app '" + app->name + "' was stopped before '" + fn.name + "' started");
      sched->fail_queue(fn, status::cancelled,
                        "app '" + app->name + "' was " + (successor ? "redeployed without" : "stopped before") + " '" +
                            fn.name + "'" + (successor ? " with this signature" : " started"));
    }
    // Running inputs finish on the old containers, which stop once idle.
    sched->stop_containers(fn, /*idle_only=*/true);
  }
  // Calls still waiting for their arguments, or for a retry, follow the queued ones. (The retired app goes
  // once its containers have: nothing else may point at it by then.)
  std::vector<std::uint64_t> pending;
  for (const auto& [id, in] : graph.calls()) {
    if (in->function->app == app.get() && (in->state == call_state::waiting || in->state == call_state::backoff)) {
      pending.push_back(id);
    }
  }
  for (std::uint64_t id : pending) {
    call_record* found = graph.find(id);  // failing one may have failed (and forgotten) a consumer among them
    if (!found) continue;
    call_record& in = *found;
    function_state* next = nullptr;
    if (successor) {
      auto f = successor->functions.find(in.function->name);
      if (f != successor->functions.end() && same_signature(f->second, *in.function)) next = &f->second;
    }
    if (next) {
      in.function = next;
    } else {
      fail(in, {status::cancelled, "", "app '" + app->name + "' was stopped before '" + in.function->name + "' ran",
                in.function->name, in.call_id, ""});
    }
  }
  retired.push_back(std::move(app));
}

void server::state::spawn(function_state& fn, const std::string& key, std::span<const char> arguments,
                          control_answer answer) {
  if (!key.empty()) {
    std::optional<std::string> existing;
    if (auto it = unflushed_keys.find(key); it != unflushed_keys.end()) existing = it->second;
    if (!existing) existing = store->call_for_key(key);
    if (existing) {
      return reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, *existing); });
    }
  }
  state_store::spawned_call stored{new_call_id(), fn.app->name, fn.name, key, {}, unix_now(), next_seq++};
  ++next_input_id;  // the call id is made from it
  stored.arguments.append(arguments.data(), arguments.size());
  if (!key.empty()) unflushed_keys.emplace(key, stored.call_id);
  std::uint64_t input_id = 0;
  if (fn.backlogged || fn.queue.size() >= options.max_queued_inputs) {
    // Beyond what the server keeps queued in memory: the call waits in the store, and is loaded as the queue
    // drains. Spawns are never refused for room; the disk is their limit.
    if (!fn.backlogged) {
      fn.backlogged = true;
      fn.loaded_seq = stored.seq - 1;
    }
  } else {
    state_store::spawned_call copy{stored.call_id, stored.app, stored.function, key, {}, stored.created_at, stored.seq};
    copy.arguments.append(stored.arguments.data(), stored.arguments.size());
    input_id = add_durable_input(fn, std::move(copy)).id;
  }
  unflushed_spawns.push_back({std::move(answer), input_id, stored.call_id});
  store->add_call(std::move(stored));
  schedule_flush();
}

call_record& server::state::add_durable_input(function_state& fn, state_store::spawned_call call) {
  auto owned = std::make_unique<call_record>();
  call_record& in = *owned;
  in.call_id = std::move(call.call_id);
  in.id = next_input_id++;
  in.durable = true;
  in.function = &fn;
  in.created = std::chrono::steady_clock::now();
  in.created_at = call.created_at;
  in.arguments = std::move(call.arguments);
  graph.add(std::move(owned));
  durable_calls.emplace(in.call_id, &in);
  fn.loaded_seq = std::max(fn.loaded_seq, call.seq);
  return in;
}

void server::state::fail_backlog(function_state& fn, const std::string& message) {
  if (!fn.backlogged) return;
  fn.backlogged = false;
  detail::buffer error;
  wire::encode_error(error, {status::cancelled, "", message, fn.name, "", ""});
  store->finish_unfinished(fn.app->name, fn.name, status::cancelled, error.view(), unix_now());
  schedule_flush();
}

void server::state::load_backlog(function_state& fn) {
  if (!fn.backlogged || stopping || fn.app->stopped || fn.queue.size() > options.max_queued_inputs / 2) return;
  store->flush();  // the newest spawns may still wait to be written
  const std::size_t room = options.max_queued_inputs - fn.queue.size();
  auto calls = store->unfinished_calls(fn.app->name, fn.name, fn.loaded_seq, room);
  if (calls.size() < room) fn.backlogged = false;
  for (auto& call : calls) {
    if (durable_calls.contains(call.call_id)) continue;
    call_record& in = add_durable_input(fn, std::move(call));
    in.state = call_state::queued;
    fn.queue.push_back(&in);
  }
}

void server::state::schedule_flush() {
  if (flush_posted) return;
  flush_posted = true;
  // After whatever else this turn of the loop brings: one commit for all of it.
  asio::post(io, [this] { flush_store(); });
}

void server::state::flush_store() {
  flush_posted = false;
  auto spawned = std::move(unflushed_spawns);
  unflushed_spawns.clear();
  unflushed_keys.clear();
  std::string failure;
  try {
    store->flush();
  } catch (const std::exception& e) {
    failure = e.what();
    spdlog::error("{}", failure);
  }
  for (const auto& [answer, input_id, call_id] : spawned) {
    if (input_id == 0) {  // in the backlog: stored, nothing to start
      if (failure.empty()) {
        reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, call_id); });
      } else {
        reply_error(answer, {status::internal, "", "the server could not store the call: " + failure, "", "", ""});
      }
      continue;
    }
    call_record* found = graph.find(input_id);
    if (!found) continue;
    call_record& in = *found;
    if (!failure.empty()) {
      durable_calls.erase(in.call_id);
      reply_error(answer,
                  {status::internal, "", "the server could not store the call: " + failure, in.function->name, "", ""});
      graph.discard(in);
      continue;
    }
    reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, in.call_id); });
    graph.start_when_ready(in);  // stored: now it may run
  }
}

void server::state::finish_durable(call_record& in) {
  durable_calls.erase(in.call_id);
  finish_stored(in.call_id, in.outcome, in.result.view());
}

void server::state::finish_stored(const std::string& call_id, status outcome, std::span<const char> result) {
  store->finish_call(call_id, outcome, result, unix_now());
  schedule_flush();
  auto waiters = get_waiters.find(call_id);
  if (waiters == get_waiters.end()) return;
  auto ready = std::move(waiters->second);
  get_waiters.erase(waiters);
  for (auto& w : ready) {
    reply(w.answer, outcome, [&](detail::buffer& out) { out.append(result.data(), result.size()); });
  }
}

void server::state::wait_for_call(control_answer answer, const std::string& call_id, const std::string& function,
                                  std::uint32_t timeout_ms) {
  // (Captures by value: the timeout fires after the request's handler has returned.)
  auto not_finished = [this, call_id, function](const control_answer& to) {
    reply_error(to,
                {status::running, "",
                 "call " + call_id + " of '" + function + "' has not finished within the timeout; get it again later",
                 function, call_id, ""});
  };
  if (timeout_ms == 0) return not_finished(answer);
  const std::uint64_t id = next_get_waiter++;
  get_waiter w{id, std::move(answer), std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(timeout_ms))};
  w.timer->async_wait([this, call_id, id, not_finished](boost::system::error_code ec) {
    if (ec) return;
    auto waiters = get_waiters.find(call_id);
    if (waiters == get_waiters.end()) return;
    auto it =
        std::find_if(waiters->second.begin(), waiters->second.end(), [id](const get_waiter& g) { return g.id == id; });
    if (it == waiters->second.end()) return;
    const control_answer to = std::move(it->answer);
    waiters->second.erase(it);
    if (waiters->second.empty()) get_waiters.erase(waiters);
    not_finished(to);
  });
  get_waiters[call_id].push_back(std::move(w));
}

void server::state::get_call(const std::string& call_id, std::uint32_t timeout_ms, control_answer answer) {
  if (auto it = durable_calls.find(call_id); it != durable_calls.end()) {
    return wait_for_call(std::move(answer), call_id, it->second->function->name, timeout_ms);
  }
  auto stored = store->find_call(call_id);
  if (!stored) {
    return reply_error(
        answer, {status::unknown_call, "", "no call " + call_id + " on this server (check the id and the server)", "",
                 call_id, ""});
  }
  if (!stored->finished) {
    return wait_for_call(std::move(answer), call_id, stored->function, timeout_ms);  // in the backlog
  }
  // (The hourly sweep drops expired results; one past the retention reads as expired before that, too.)
  if (stored->expired || stored->finished_at < unix_now() - static_cast<double>(options.retention.count())) {
    return reply_error(
        answer, {status::expired, "",
                 "the result of call " + call_id + " of '" + stored->function +
                     "' has expired: the server keeps results for its retention period (ferry server --retention)",
                 stored->function, call_id, ""});
  }
  reply(answer, stored->outcome,
        [&](detail::buffer& out) { out.append(stored->result.data(), stored->result.size()); });
}

void server::state::recover() {
  next_seq = store->max_seq() + 1;
  for (auto& d : store->deployments()) {
    auto app = std::make_unique<app_instance>();
    app->name = d.app;
    app->declared_name = d.declared_name;
    app->digest = d.digest;
    app->deployed_at = d.deployed_at;
    app->arguments = std::move(d.arguments);
    app->executable = (options.state_dir / "binaries" / d.digest).string();
    detail::reader r{d.specs.view()};
    auto specs = ferry::decode<std::vector<wire::function_spec>>(r);
    std::error_code ec;
    if (!add_functions(*app, specs).empty() || !std::filesystem::exists(app->executable, ec)) {
      spdlog::error("deployment of app '{}' is damaged (binary {}); deploy it again", d.app, app->executable);
      continue;
    }
    deployed[d.app] = std::move(app);
  }
  std::size_t resumed = 0;
  for (auto& call : store->unfinished_calls()) {
    function_state* fn = nullptr;
    if (auto app = deployed.find(call.app); app != deployed.end()) {
      auto f = app->second->functions.find(call.function);
      if (f != app->second->functions.end()) fn = &f->second;
    }
    if (!fn) {
      detail::buffer error;
      wire::encode_error(error, {status::unknown_app, "",
                                 "'" + call.app + "." + call.function +
                                     "' is not deployed on this server any more (the program that spawned it exited, "
                                     "or the app was stopped)",
                                 call.function, call.call_id, ""});
      store->finish_call(call.call_id, status::unknown_app, error.view(), unix_now());
      continue;
    }
    ++resumed;
    if (fn->backlogged || fn->queue.size() >= options.max_queued_inputs) {
      fn->backlogged = true;  // the rest stays in the store until the queue has room
      continue;
    }
    graph.start_when_ready(add_durable_input(*fn, std::move(call)));
  }
  store->flush();
  if (!deployed.empty() || resumed) {
    spdlog::info("recovered {} deployed app(s) and {} unfinished spawned call(s)", deployed.size(), resumed);
  }
  for (auto& [name, app] : deployed) {
    for (auto& [fname, fn] : app->functions) sched->dispatch(fn);
  }
  expire_results();
}

void server::state::expire_results() {
  store->expire_results(unix_now() - static_cast<double>(options.retention.count()));
  expiry_timer = std::make_unique<asio::steady_timer>(io, std::chrono::hours(1));
  expiry_timer->async_wait([this](boost::system::error_code ec) {
    if (!ec) expire_results();
  });
}

}  // namespace ferry::server
