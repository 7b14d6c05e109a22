#include "server/control_service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "server/sha256.hpp"

namespace ferry::server {

using wire::status;

namespace {
void encode_nil(detail::buffer& out) { out.commit(mp_encode_nil(out.reserve(1))); }
}  // namespace

control_service::control_service(host& h, call_graph& graph, call_numbering& numbers, scheduler& sched, clock& time,
                                 server_metrics& metrics, std::unique_ptr<state_store> store, control_options options)
    : host_(h),
      graph_(graph),
      numbers_(numbers),
      sched_(sched),
      clock_(time),
      metrics_(metrics),
      store_(std::move(store)),
      options_(std::move(options)) {}

void control_service::reply_error(const control_answer& answer, const wire::error_record& error) {
  host_.reply(answer, error.code, [&](detail::buffer& out) { wire::encode_error(out, error); });
}

std::vector<wire::app_row> control_service::app_rows() const {
  std::vector<wire::app_row> rows;
  for (const auto& [name, app] : deployed_) {
    std::vector<wire::app_function> functions;
    for (const auto& [fname, fn] : app->functions) functions.emplace_back(fname, fn.signature);
    rows.emplace_back(name, app->digest, app->deployed_at, std::move(functions));
  }
  return rows;
}

void control_service::list_calls(const state_store::call_filter& filter, const control_answer& answer) {
  std::vector<wire::call_row> rows;
  try {
    store_->flush();
    rows = store_->recent_calls(filter);
  } catch (const Error& e) {  // an unknown status (ArgumentError)
    return reply_error(answer, {status::bad_arguments, "", e.what(), "", "", ""});
  }
  host_.reply(answer, status::ok, [&](detail::buffer& out) { codec<std::vector<wire::call_row>>::encode(out, rows); });
}

call_record* control_service::live_call(const std::string& call_id) const {
  auto it = live_calls_.find(call_id);
  return it == live_calls_.end() ? nullptr : it->second;
}

void control_service::handed_over(const call_record& original, call_record& target) {
  if (original.durable) live_calls_[original.call_id] = &target;
}

void control_service::collect_retired() {
  std::erase_if(retired_, [](const auto& app) {
    for (const auto& [name, fn] : app->functions) {
      if (!fn.containers.empty()) return false;
    }
    return true;
  });
}

void control_service::flush() { store_->flush(); }

std::vector<wire::container_row> control_service::container_rows() const {
  const auto now = clock_.now();
  std::vector<wire::container_row> rows;
  for (const auto& [id, c] : sched_.containers()) {
    const std::chrono::duration<double> uptime = now - c->started_at;
    rows.emplace_back(number(c->id), c->function->app->name, c->function->name, to_string(c->state),
                      static_cast<std::uint32_t>(c->running_inputs()), c->process->pid(), uptime.count(),
                      c->process->rss_bytes(), "");
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

void control_service::stop_app(const control_answer& answer, const std::string& name) {
  auto it = deployed_.find(name);
  if (it == deployed_.end()) {
    return reply_error(
        answer, {status::unknown_app, "", "no app named '" + name + "' is deployed (see `ferry apps`)", "", "", ""});
  }
  auto app = std::move(it->second);
  deployed_.erase(it);
  store_->remove_deployment(name);
  spdlog::info("stopped app '{}'", name);
  retire(std::move(app), nullptr);
  host_.reply(answer, status::ok, encode_nil);
}

void control_service::cancel_spawned(const std::string& call_id, const control_answer& answer) {
  if (auto it = live_calls_.find(call_id); it != live_calls_.end()) {
    host_.cancel(*it->second);
  } else {
    auto stored = store_->find_call(call_id);
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
  host_.reply(answer, status::ok, encode_nil);
}

function_state* control_service::deployed_function(const control_answer& answer, const std::string& qualified,
                                                   app_instance* own) {
  const auto dot = qualified.find('.');
  const std::string app_name = qualified.substr(0, dot);
  const std::string fname = dot == std::string::npos ? "" : qualified.substr(dot + 1);
  app_instance* app = nullptr;
  if (auto it = deployed_.find(app_name); it != deployed_.end()) {
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

void control_service::deploy(const control_answer& answer, const std::string& app_name,
                             const std::vector<wire::function_spec>& specs, std::span<const char> image,
                             const std::string& declared_name, std::vector<std::string> arguments) {
  auto refuse_deploy = [&](const std::string& message) {
    reply_error(answer, {status::bad_arguments, "", message, "", "", ""});
  };
  if (options_.state_dir.empty()) {
    return refuse_deploy("this server keeps no state (an embedded server): deploy to a `ferry server`");
  }
  if (!wire::valid_name(app_name)) {
    return refuse_deploy("'" + app_name + "' is not a valid app name: use " + wire::name_rule);
  }
  auto app = std::make_unique<app_instance>();
  app->name = app_name;
  app->declared_name = declared_name;
  app->arguments = std::move(arguments);
  if (auto problem = add_functions(*app, specs, metrics_); !problem.empty()) return refuse_deploy(problem);
  // Hashed and stored off the loop (from a copy: the frame's bytes are the connection's), answered on it.
  struct deployment {
    std::unique_ptr<app_instance> app;
    std::string image;
    std::filesystem::path path;
    std::string error;
    std::vector<wire::function_spec> specs;
  };
  auto d =
      std::make_shared<deployment>(deployment{std::move(app), std::string(image.data(), image.size()), {}, {}, specs});
  auto work = [d, dir = options_.state_dir / "binaries"] {
    d->app->digest = sha256_hex(d->image);
    // Content-addressed: the same binary deployed twice (or under two names) is stored once.
    d->path = dir / d->app->digest;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::exists(d->path, ec)) {
      const auto partial = d->path.string() + ".partial";
      {
        std::ofstream out(partial, std::ios::binary | std::ios::trunc);
        out.write(d->image.data(), static_cast<std::streamsize>(d->image.size()));
        if (!out) d->error = "cannot write " + partial + " on the server";
      }
      std::filesystem::permissions(partial, std::filesystem::perms::owner_all, ec);
      if (d->error.empty()) std::filesystem::rename(partial, d->path, ec);
      if (d->error.empty() && ec) d->error = "cannot store the binary on the server: " + ec.message();
    }
    std::string().swap(d->image);  // (its memory goes back now, not with the answer)
  };
  auto then = [this, d, answer] {
    if (!d->error.empty()) return reply_error(answer, {status::bad_arguments, "", d->error, "", "", ""});
    d->app->deployed_at = unix_now();
    d->app->executable = d->path.string();
    detail::buffer encoded_specs;
    codec<std::vector<wire::function_spec>>::encode(encoded_specs, d->specs);
    store_->put_deployment({d->app->name, d->app->declared_name, d->app->digest, d->app->deployed_at,
                            std::move(encoded_specs), d->app->arguments});
    app_instance& fresh = *d->app;
    std::unique_ptr<app_instance> previous;
    if (auto it = deployed_.find(fresh.name); it != deployed_.end()) previous = std::move(it->second);
    deployed_[fresh.name] = std::move(d->app);
    spdlog::info("deployed app '{}' ({} functions, binary sha256:{})", fresh.name, fresh.functions.size(),
                 fresh.digest.substr(0, 12));
    if (previous) retire(std::move(previous), &fresh);
    for (auto& [fname, fn] : fresh.functions) sched_.scale(fn);
    host_.reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, fresh.digest); });
  };
  if (options_.off_loop) return options_.off_loop(std::move(work), std::move(then));
  work();
  then();
}

void control_service::retire(std::unique_ptr<app_instance> app, app_instance* successor) {
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
      sched_.move_queue(fn, *next);
    } else {
      fail_backlog(fn, "app '" + app->name + "' was stopped before '" + fn.name + "' started");
      sched_.fail_queue(fn, status::cancelled,
                        "app '" + app->name + "' was " + (successor ? "redeployed without" : "stopped before") + " '" +
                            fn.name + "'" + (successor ? " with this signature" : " started"));
    }
    // Running inputs finish on the old containers, which stop once idle.
    sched_.stop_containers(fn, /*idle_only=*/true);
  }
  // Calls still waiting for their arguments, or for a retry, follow the queued ones. (The retired app goes
  // once its containers have: nothing else may point at it by then.)
  std::vector<graph_id> pending;
  for (const auto& [id, in] : graph_.calls()) {
    if (in->function->app == app.get() && (in->state == call_state::waiting || in->state == call_state::backoff)) {
      pending.push_back(id);
    }
  }
  for (graph_id id : pending) {
    call_record* found = graph_.find(id);  // failing one may have failed (and forgotten) a consumer among them
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
      graph_.fail(in,
                  {status::cancelled, "", "app '" + app->name + "' was stopped before '" + in.function->name + "' ran",
                   in.function->name, in.call_id, ""});
    }
  }
  retired_.push_back(std::move(app));
}

void control_service::release_memory() {
  if (live_calls_.empty()) live_calls_ = decltype(live_calls_)();
  if (unflushed_keys_.empty()) unflushed_keys_ = decltype(unflushed_keys_)();
  if (get_waiters_.empty()) get_waiters_ = decltype(get_waiters_)();
  store_->release_memory();
}

void control_service::spawn(function_state& fn, const std::string& key, std::span<const char> arguments,
                            control_answer answer) {
  if (!key.empty()) {
    std::optional<std::string> existing;
    if (auto it = unflushed_keys_.find(key); it != unflushed_keys_.end()) existing = it->second;
    if (!existing) existing = store_->call_for_key(key);
    if (existing) {
      return host_.reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, *existing); });
    }
  }
  state_store::spawned_call stored{numbers_.next().second, fn.app->name, fn.name, key, {}, unix_now(), next_seq_++};
  stored.arguments.append(arguments.data(), arguments.size());
  if (!key.empty()) unflushed_keys_.emplace(key, stored.call_id);
  graph_id id{};
  std::size_t& unstored = unstored_[{fn.app->name, fn.name}];
  if (fn.backlogged || fn.queue.size() + unstored >= options_.max_queued_inputs) {
    // Beyond what the server keeps queued in memory: the call waits in the store, and is loaded as the queue
    // drains. Spawns are never refused for room; the disk is their limit.
    if (!fn.backlogged) {
      fn.backlogged = true;
      fn.loaded_seq = stored.seq - 1;
    }
  } else {
    state_store::spawned_call copy{stored.call_id, stored.app, stored.function, key, {}, stored.created_at, stored.seq};
    copy.arguments.append(stored.arguments.data(), stored.arguments.size());
    id = add_call(fn, std::move(copy)).id;
    ++unstored;
  }
  unflushed_spawns_.push_back({std::move(answer), id, stored.call_id});
  store_->add_call(std::move(stored));
  schedule_flush();
}

call_record& control_service::add_call(function_state& fn, state_store::spawned_call call) {
  auto owned = std::make_unique<call_record>();
  call_record& in = *owned;
  in.id = numbers_.next().first;
  in.call_id = std::move(call.call_id);
  in.durable = true;
  in.function = &fn;
  in.created = clock_.now();
  in.created_at = call.created_at;
  in.arguments = wire::payload(std::move(call.arguments));
  graph_.add(std::move(owned));
  live_calls_.emplace(in.call_id, &in);
  fn.loaded_seq = std::max(fn.loaded_seq, call.seq);
  return in;
}

void control_service::fail_backlog(function_state& fn, const std::string& message) {
  if (!fn.backlogged) return;
  fn.backlogged = false;
  detail::buffer error;
  wire::encode_error(error, {status::cancelled, "", message, fn.name, "", ""});
  store_->finish_unfinished(fn.app->name, fn.name, status::cancelled, error.view(), unix_now());
  schedule_flush();
}

void control_service::refill(function_state& fn) {
  if (!fn.backlogged || host_.shutting_down() || fn.app->stopped || fn.queue.size() > options_.max_queued_inputs / 2) {
    return;
  }
  // Spawned before the backlog began and not queued yet (the flush that stores them queues them): they go first.
  if (auto it = unstored_.find({fn.app->name, fn.name}); it != unstored_.end() && it->second > 0) return;
  store_->flush();  // the newest spawns may still wait to be written
  const std::size_t room = options_.max_queued_inputs - fn.queue.size();
  auto calls = store_->unfinished_calls(fn.app->name, fn.name, fn.loaded_seq, room);
  if (calls.size() < room) fn.backlogged = false;
  for (auto& call : calls) {
    if (live_calls_.contains(call.call_id)) continue;
    call_record& in = add_call(fn, std::move(call));
    in.state = call_state::queued;
    fn.queue.push_back(&in);
  }
}

void control_service::schedule_flush() {
  if (flush_timer_) return;
  // After whatever else this turn of the loop brings: one commit for all of it.
  flush_timer_ = clock_.at(clock_.now(), [this] { flush_spawns(); });
}

void control_service::flush_spawns() {
  flush_timer_.reset();
  auto spawned = std::move(unflushed_spawns_);
  unflushed_spawns_.clear();
  unflushed_keys_.clear();
  std::string failure;
  try {
    store_->flush();
  } catch (const std::exception& e) {
    failure = e.what();
    spdlog::error("{}", failure);
  }
  for (const auto& [answer, id, call_id] : spawned) {
    if (id == graph_id{}) {  // in the backlog: stored, nothing to start
      if (failure.empty()) {
        host_.reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, call_id); });
      } else {
        reply_error(answer, {status::internal, "", "the server could not store the call: " + failure, "", "", ""});
      }
      continue;
    }
    call_record* found = graph_.find(id);
    if (!found) continue;
    call_record& in = *found;
    if (!failure.empty()) {
      live_calls_.erase(in.call_id);
      reply_error(answer,
                  {status::internal, "", "the server could not store the call: " + failure, in.function->name, "", ""});
      graph_.discard(in);
      continue;
    }
    host_.reply(answer, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, in.call_id); });
    graph_.start_when_ready(in);  // stored: now it may run
  }
  unstored_.clear();
}

void control_service::finished(call_record& in) {
  live_calls_.erase(in.call_id);
  finish_stored(in.call_id, in.outcome, in.result.view());
}

void control_service::finish_stored(const std::string& call_id, status outcome, std::span<const char> result) {
  store_->finish_call(call_id, outcome, result, unix_now());
  schedule_flush();
  auto waiters = get_waiters_.find(call_id);
  if (waiters == get_waiters_.end()) return;
  auto ready = std::move(waiters->second);
  get_waiters_.erase(waiters);
  for (auto& w : ready) {
    host_.reply(w.answer, outcome, [&](detail::buffer& out) { out.append(result.data(), result.size()); });
  }
}

void control_service::wait_for_call(control_answer answer, const std::string& call_id, const std::string& function,
                                    std::uint32_t timeout_ms) {
  // (Captures by value: the timeout fires after the request's handler has returned.)
  auto not_finished = [this, call_id, function](const control_answer& to) {
    reply_error(to,
                {status::running, "",
                 "call " + call_id + " of '" + function + "' has not finished within the timeout; get it again later",
                 function, call_id, ""});
  };
  if (timeout_ms == 0) return not_finished(answer);
  const std::uint64_t id = next_get_waiter_++;
  get_waiter w{id, std::move(answer), nullptr};
  w.timer = clock_.after(std::chrono::milliseconds(timeout_ms), [this, call_id, id, not_finished] {
    auto waiters = get_waiters_.find(call_id);
    if (waiters == get_waiters_.end()) return;
    auto it =
        std::find_if(waiters->second.begin(), waiters->second.end(), [id](const get_waiter& g) { return g.id == id; });
    if (it == waiters->second.end()) return;
    const control_answer to = std::move(it->answer);
    waiters->second.erase(it);
    if (waiters->second.empty()) get_waiters_.erase(waiters);
    not_finished(to);
  });
  get_waiters_[call_id].push_back(std::move(w));
}

void control_service::get_call(const std::string& call_id, std::uint32_t timeout_ms, control_answer answer) {
  if (auto it = live_calls_.find(call_id); it != live_calls_.end()) {
    return wait_for_call(std::move(answer), call_id, it->second->function->name, timeout_ms);
  }
  auto stored = store_->find_call(call_id);
  if (!stored) {
    return reply_error(
        answer, {status::unknown_call, "", "no call " + call_id + " on this server (check the id and the server)", "",
                 call_id, ""});
  }
  if (!stored->finished) {
    return wait_for_call(std::move(answer), call_id, stored->function, timeout_ms);  // in the backlog
  }
  // (The hourly sweep drops expired results; one past the retention reads as expired before that, too.)
  if (stored->expired || stored->finished_at < unix_now() - static_cast<double>(options_.retention.count())) {
    return reply_error(
        answer, {status::expired, "",
                 "the result of call " + call_id + " of '" + stored->function +
                     "' has expired: the server keeps results for its retention period (ferry server --retention)",
                 stored->function, call_id, ""});
  }
  host_.reply(answer, stored->outcome,
              [&](detail::buffer& out) { out.append(stored->result.data(), stored->result.size()); });
}

void control_service::recover() {
  next_seq_ = store_->max_seq() + 1;
  for (auto& d : store_->deployments()) {
    auto app = std::make_unique<app_instance>();
    app->name = d.app;
    app->declared_name = d.declared_name;
    app->digest = d.digest;
    app->deployed_at = d.deployed_at;
    app->arguments = std::move(d.arguments);
    app->executable = (options_.state_dir / "binaries" / d.digest).string();
    detail::reader r{d.specs.view()};
    auto specs = ferry::decode<std::vector<wire::function_spec>>(r);
    std::error_code ec;
    if (!add_functions(*app, specs, metrics_).empty() || !std::filesystem::exists(app->executable, ec)) {
      spdlog::error("deployment of app '{}' is damaged (binary {}); deploy it again", d.app, app->executable);
      continue;
    }
    deployed_[d.app] = std::move(app);
  }
  std::size_t resumed = 0;
  for (auto& call : store_->unfinished_calls()) {
    function_state* fn = nullptr;
    if (auto app = deployed_.find(call.app); app != deployed_.end()) {
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
      store_->finish_call(call.call_id, status::unknown_app, error.view(), unix_now());
      continue;
    }
    ++resumed;
    if (fn->backlogged || fn->queue.size() >= options_.max_queued_inputs) {
      fn->backlogged = true;  // the rest stays in the store until the queue has room
      continue;
    }
    graph_.start_when_ready(add_call(*fn, std::move(call)));
  }
  store_->flush();
  if (!deployed_.empty() || resumed) {
    spdlog::info("recovered {} deployed app(s) and {} unfinished spawned call(s)", deployed_.size(), resumed);
  }
  for (auto& [name, app] : deployed_) {
    for (auto& [fname, fn] : app->functions) sched_.dispatch(fn);
  }
  expire_results();
}

void control_service::expire_results() {
  store_->expire_results(unix_now() - static_cast<double>(options_.retention.count()));
  expiry_timer_ = clock_.after(std::chrono::hours(1), [this] { expire_results(); });
}

}  // namespace ferry::server
