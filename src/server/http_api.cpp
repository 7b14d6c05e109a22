// The HTTP API's routes (docs/http-api.md is the reference): JSON at the edge, the server's own control
// requests behind it (spawn, get, cancel), its state read directly for listings, logs, graphs and metrics.
#include <unistd.h>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <optional>
#include <set>
#include <variant>

#include "base/secrets.hpp"
#include "codec/json.hpp"
#include "server/dashboard_assets.hpp"
#include "server/server_state.hpp"

namespace ferry::server {

namespace json = boost::json;
namespace urls = boost::urls;

/// A request's target: its path segments and query parameters, decoded.
struct target_query {
  std::vector<std::string> path;  // the segments, decoded
  std::map<std::string, std::string> query;
  std::string query_value(const std::string& key, const std::string& fallback = "") const {
    auto it = query.find(key);
    return it == query.end() ? fallback : it->second;
  }
  /// Parameter `key` as a number in [min, max] (a whole one when `whole`): `fallback` when absent; otherwise
  /// an error message naming the parameter and what it takes, for a 400.
  std::variant<double, std::string> number(const std::string& key, double fallback, double min, double max,
                                           bool whole) const {
    auto it = query.find(key);
    if (it == query.end()) return fallback;
    const std::string& text = it->second;
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value) || value < min || value > max ||
        (whole && value != std::floor(value))) {
      char range[64];
      std::snprintf(range, sizeof range, "%g to %g", min, max);
      return key + " must be " + (whole ? "a whole number" : "a number") + " from " + range + ", not '" + text + "'";
    }
    return value;
  }
};

namespace {

http_response json_response(http::status status, const json::value& body) {
  http_response response{status, 11};
  response.set(http::field::content_type, "application/json");
  response.body() = json::serialize(body) + "\n";
  return response;
}

/// The HTTP status of a call's (or request's) failure.
http::status http_status_of(status s) {
  return static_cast<std::uint8_t>(s) <= wire::last_status ? static_cast<http::status>(wire::row(s).http)
                                                           : http::status::internal_server_error;
}

http_response error_response(status code, std::span<const char> payload, const std::string& call_id = "") {
  wire::error_record error;
  try {
    error = wire::decode_error(payload);
  } catch (const std::exception&) {
    error.message = wire::to_string(code);
  }
  return json_error(http_status_of(code), wire::to_string(code), error.message,
                    call_id.empty() ? error.call_id : call_id,
                    code == status::remote_exception ? std::string_view(error.type) : std::string_view{});
}

/// A request target (origin form: /path?query) as its decoded path segments (empty ones skipped) and query
/// parameters; nullopt when it is not one.
std::optional<target_query> parse_target(std::string_view text) {
  auto url = urls::parse_origin_form(text);
  if (!url) return std::nullopt;
  target_query t;
  for (const std::string segment : url->segments()) {
    if (!segment.empty()) t.path.push_back(segment);
  }
  for (const urls::param param : url->params()) t.query[param.key] = param.value;
  return t;
}

json::value nullable(double v) { return v > 0 ? json::value(v) : json::value(nullptr); }
json::value nullable(const std::string& s) { return s.empty() ? json::value(nullptr) : json::value(s); }

json::object call_json(const call_summary& c) {
  json::object o{{"call_id", c.call_id},
                 {"app", c.app},
                 {"function", c.function},
                 {"status", c.state},
                 {"created_at", c.created_at},
                 {"ended_at", nullable(c.ended_at)},
                 {"duration_s", c.ended_at > 0 ? json::value(std::max(0.0, c.ended_at - c.created_at)) : nullptr},
                 {"attempts", c.attempts},
                 {"tail_hops", c.tail_hops},
                 {"container_id", c.container_id ? json::value(c.container_id) : nullptr},
                 {"parent", nullable(c.parent)},
                 {"tail_call", nullable(c.tail_call)}};
  json::array arguments;
  for (const auto& id : c.arguments_from) arguments.emplace_back(id);
  o["arguments_from"] = std::move(arguments);
  if (c.state == "failed" || c.state == "cancelled") {
    json::object error{{"code", wire::to_string(c.outcome)}, {"message", c.error_message}};
    if (!c.error_type.empty()) error["type"] = c.error_type;
    o["error"] = std::move(error);
  } else {
    o["error"] = nullptr;
  }
  if (c.has_progress) {
    o["progress"] =
        json::object{{"done", c.progress_done}, {"total", c.progress_total}, {"message", c.progress_message}};
  } else {
    o["progress"] = nullptr;
  }
  return o;
}

json::object log_json(const log_entry& e) {
  return {{"seq", e.seq},         {"time", e.time},
          {"app", e.app},         {"function", e.function},
          {"call_id", e.call_id}, {"stream", e.stream == wire::log_stream::stderr_stream ? "stderr" : "stdout"},
          {"text", e.text}};
}

json::object progress_json(const call_record& in) {
  return {{"call_id", in.call_id},
          {"done", in.progress ? in.progress->done : 0},
          {"total", in.progress ? in.progress->total : 0},
          {"message", in.progress ? in.progress->message : ""}};
}

std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// ---- Reading the state ----

json::object app_json(const app_instance& app) {
  json::array functions;
  for (const auto& [name, fn] : app.functions) {
    std::size_t running = 0;
    for (const container_record* c : fn.containers) running += c->running_inputs();
    functions.push_back(json::object{
        {"name", name},
        {"signature", fn.signature},
        {"options", json::object{{"max_inputs", fn.max_inputs},
                                 {"max_containers", fn.max_containers},
                                 {"min_containers", fn.min_containers},
                                 {"buffer_containers", fn.buffer_containers},
                                 {"scaledown_window_s", static_cast<double>(fn.scaledown_window.count()) / 1000},
                                 {"timeout_s", static_cast<double>(fn.timeout.count()) / 1000},
                                 {"max_retries", fn.retries.max_retries},
                                 {"cpu", fn.need.cpu},
                                 {"memory_mb", fn.need.memory_mb},
                                 {"gpus", fn.need.gpus},
                                 {"placement", fn.need.placement}}},
        {"queued", fn.queue.size()},
        {"running", running},
        {"containers", fn.containers.size()},
        {"waiting_containers", fn.unplaced_containers},
        {"waiting_for", fn.waiting_for}});
  }
  return {{"name", app.name},
          {"kind", app.deployed() ? "deployed" : "running"},
          {"digest", app.digest},
          {"deployed_at", app.deployed_at},
          {"functions", std::move(functions)}};
}

}  // namespace

call_record* server::state::live_call(const std::string& call_id) const {
  if (call_record* spawned = control->live_call(call_id)) return spawned;
  for (const auto& [id, in] : graph.calls()) {
    if (in->call_id == call_id) return in.get();
  }
  return nullptr;
}

bool server::state::find_summary(const std::string& call_id, call_summary& out) const {
  if (const call_record* in = live_call(call_id); in && in->state != call_state::done) {
    summarize(*in, out);
    return true;
  }
  if (const call_summary* ended = obs->history().find(call_id)) {
    out = *ended;
    return true;
  }
  return false;
}

// ---- Routing ----

void server::state::on_http(const http_request& req, const std::shared_ptr<http_connection>& conn) {
  const std::optional<target_query> parsed = parse_target(req.target());
  if (!parsed) {
    return conn->respond(json_error(http::status::bad_request, "bad_request",
                                    "the request target '" + std::string(req.target()) +
                                        "' is not a path and query (percent-encode what is not a letter or digit)"));
  }
  const target_query& t = *parsed;
  const auto& p = t.path;
  const bool get = req.method() == http::verb::get;
  const bool post = req.method() == http::verb::post;

  if (get && (p.empty() || (p.size() == 2 && p[0] == "assets"))) {
    const std::string path = p.empty() ? "/" : "/assets/" + p[1];
    if (const dashboard_asset* asset = find_dashboard_asset(path)) {
      http_response response{http::status::ok, 11};
      response.set(http::field::content_type, asset->content_type);
      response.set(http::field::cache_control, "no-cache");
      response.body() = std::string(asset->body);
      return conn->respond(std::move(response));
    }
  }
  const bool api = !p.empty() && (p[0] == "v1" || p[0] == "metrics");
  if (!api)
    return conn->respond(
        json_error(http::status::not_found, "not_found", "no such page: " + std::string(req.target())));

  // The token: a Bearer header, or (for EventSource, which cannot set headers) ?token=.
  std::string token = t.query_value("token");
  if (auto auth = req.find(http::field::authorization); auth != req.end()) {
    const std::string_view value = auth->value();
    if (value.starts_with("Bearer ")) token = std::string(value.substr(7));
  }
  if (!constant_time_equal(token, options.token)) {
    http_response response = json_error(
        http::status::unauthorized, "unauthorized",
        token.empty() ? "send the server's token: Authorization: Bearer TOKEN (the 'token' file in its state directory)"
                      : "invalid token: use the one in the server's state directory (the 'token' file)");
    response.set(http::field::www_authenticate, "Bearer");
    return conn->respond(std::move(response));
  }

  if (get && p.size() == 1 && p[0] == "metrics") return conn->respond(metrics_response());
  if (p.size() >= 2 && p[0] == "v1") {
    const std::string& resource = p[1];
    if (get && resource == "apps" && p.size() == 2) {
      json::array apps_json;
      for (const auto& [name, app] : control->deployed()) apps_json.push_back(app_json(*app));
      for (const auto& [owner, app] : apps) {
        if (!app->stopped) apps_json.push_back(app_json(*app));
      }
      return conn->respond(json_response(http::status::ok, json::object{{"apps", std::move(apps_json)}}));
    }
    if (resource == "apps" && p.size() >= 3) {
      const app_instance* app = nullptr;
      if (auto it = control->deployed().find(p[2]); it != control->deployed().end()) app = it->second.get();
      for (const auto& [owner, a] : apps) {
        if (!app && !a->stopped && a->name == p[2]) app = a.get();
      }
      if (!app) {
        return conn->respond(json_error(http::status::not_found, "unknown_app",
                                        "no app named '" + p[2] + "' on this server (GET /v1/apps lists them)"));
      }
      if (get && p.size() == 3) return conn->respond(json_response(http::status::ok, app_json(*app)));
      if (get && p.size() == 4 && p[3] == "logs") return respond_logs(conn, app->name, "", t);
      if (get && p.size() == 4 && p[3] == "events") return stream_events(conn, app->name, "");
      if (post && p.size() == 6 && p[3] == "functions" && (p[5] == "call" || p[5] == "spawn")) {
        return run_function(req, conn, *app, p[4], p[5] == "call", t);
      }
    }
    if (get && resource == "containers" && p.size() == 2) {
      json::array rows;
      for (const auto& [id, app, function, state, inputs, pid, uptime_s, rss_bytes, waiting_for] : container_rows()) {
        json::object row{{"id", id},         {"app", app}, {"function", function}, {"state", state},
                         {"inputs", inputs}, {"pid", pid}, {"uptime_s", uptime_s}, {"rss_bytes", rss_bytes}};
        if (!waiting_for.empty()) row["waiting_for"] = waiting_for;
        rows.push_back(std::move(row));
      }
      return conn->respond(json_response(http::status::ok, json::object{{"containers", std::move(rows)}}));
    }
    if (get && resource == "calls" && p.size() == 2) return respond_calls(conn, t);
    if (resource == "calls" && p.size() >= 3) {
      const std::string& call_id = p[2];
      if (get && p.size() == 3) return respond_call(conn, call_id);
      if (get && p.size() == 4 && p[3] == "graph") return respond_graph(conn, call_id);
      if (get && p.size() == 4 && p[3] == "logs") return respond_logs(conn, "", call_id, t);
      if (get && p.size() == 4 && p[3] == "events") return stream_events(conn, "", call_id);
      if (post && p.size() == 4 && p[3] == "cancel") return cancel_call(conn, call_id);
    }
  }
  conn->respond(json_error(http::status::not_found, "not_found",
                           std::string("no route for ") + std::string(req.method_string()) + " " +
                               std::string(req.target()) + " (docs/http-api.md lists the API)"));
}

// ---- Handlers ----

void server::state::respond_calls(const std::shared_ptr<http_connection>& conn, const target_query& t) {
  const std::string app = t.query_value("app");
  const auto limit_or_error = t.number("limit", 100, 1, 10'000, /*whole=*/true);
  if (const auto* error = std::get_if<std::string>(&limit_or_error)) {
    return conn->respond(json_error(http::status::bad_request, "bad_arguments", *error));
  }
  const auto limit = static_cast<std::size_t>(std::get<double>(limit_or_error));
  // Live calls (newest first), then ended ones from the history.
  std::vector<const call_record*> live;
  for (const auto& [id, in] : graph.calls()) {
    if (in->state != call_state::done && (app.empty() || in->function->app->name == app)) live.push_back(in.get());
  }
  std::sort(live.begin(), live.end(), [](const call_record* a, const call_record* b) { return a->id > b->id; });
  json::array rows;
  call_summary summary;
  for (const call_record* in : live) {
    if (rows.size() >= limit) break;
    summarize(*in, summary);
    rows.push_back(call_json(summary));
  }
  obs->history().for_each_newest_first([&](const call_summary& c) {
    if (rows.size() >= limit) return false;
    if (app.empty() || c.app == app) rows.push_back(call_json(c));
    return true;
  });
  conn->respond(json_response(http::status::ok, json::object{{"calls", std::move(rows)}}));
}

void server::state::respond_call(const std::shared_ptr<http_connection>& conn, const std::string& call_id) {
  call_summary summary;
  const bool known = find_summary(call_id, summary);
  // The result, and spawned calls that the store holds: a `get`, without waiting.
  control->get_call(call_id, 0, {.to = [conn, call_id, known, summary](status code, std::span<const char> payload) {
                      json::object body;
                      if (known) {
                        body = call_json(summary);
                      } else if (code == status::unknown_call) {
                        return conn->respond(error_response(code, payload, call_id));
                      } else {
                        body = {{"call_id", call_id}, {"status", code == status::running ? "running" : "ended"}};
                      }
                      if (code == status::ok) {
                        try {
                          detail::reader r{payload};
                          body["result"] = codec_json::to_json(r);
                          body["status"] = "succeeded";
                        } catch (const std::exception&) {  // a value JSON cannot show
                          body["result"] = nullptr;
                        }
                      } else if (code != status::running && code != status::unknown_call) {
                        const wire::error_record error = wire::decode_error(payload);
                        body["status"] =
                            code == status::cancelled ? "cancelled" : (code == status::expired ? "expired" : "failed");
                        body["error"] = json::object{{"code", wire::to_string(code)}, {"message", error.message}};
                        if (!error.type.empty()) body["error"].as_object()["type"] = error.type;
                      }
                      conn->respond(json_response(http::status::ok, body));
                    }});
}

void server::state::respond_graph(const std::shared_ptr<http_connection>& conn, const std::string& root_id) {
  call_summary root;
  if (!find_summary(root_id, root)) {
    return conn->respond(json_error(http::status::not_found, "unknown_call",
                                    "no call " + root_id + " among the server's live and recent calls", root_id));
  }
  // Every known call, by id; then the root's descendants: children, argument calls, tail calls.
  std::map<std::string, call_summary> known;
  obs->history().for_each_newest_first([&](const call_summary& c) {
    known.emplace(c.call_id, c);
    return true;
  });
  for (const auto& [id, in] : graph.calls()) {
    if (in->state == call_state::done) continue;
    call_summary s;
    summarize(*in, s);
    known[s.call_id] = std::move(s);
  }
  std::multimap<std::string, std::string> children;  // parent -> child
  for (const auto& [id, c] : known) {
    if (!c.parent.empty()) children.emplace(c.parent, id);
  }
  json::array nodes;
  json::array edges;
  std::set<std::string> seen{root_id};
  std::deque<std::string> frontier{root_id};
  auto visit = [&](const std::string& from, const std::string& to, const char* kind, bool reversed) {
    if (!known.contains(to)) return;
    edges.push_back(json::object{{"from", reversed ? to : from}, {"to", reversed ? from : to}, {"kind", kind}});
    if (seen.insert(to).second) frontier.push_back(to);
  };
  while (!frontier.empty() && nodes.size() < 2000) {
    const std::string id = frontier.front();
    frontier.pop_front();
    const call_summary& c = id == root_id ? root : known.at(id);
    nodes.push_back(call_json(c));
    for (auto [it, end] = children.equal_range(id); it != end; ++it) visit(id, it->second, "child", false);
    for (const auto& dep : c.arguments_from) visit(id, dep, "argument", true);
    if (!c.tail_call.empty()) visit(id, c.tail_call, "tail", false);
  }
  conn->respond(json_response(
      http::status::ok, json::object{{"root", root_id}, {"nodes", std::move(nodes)}, {"edges", std::move(edges)}}));
}

void server::state::respond_logs(const std::shared_ptr<http_connection>& conn, const std::string& app,
                                 const std::string& call_id, const target_query& t) {
  const auto after_or_error = t.number("after", 0, 0, 9e15, /*whole=*/true);
  if (const auto* error = std::get_if<std::string>(&after_or_error)) {
    return conn->respond(json_error(http::status::bad_request, "bad_arguments", *error));
  }
  const auto after = static_cast<std::uint64_t>(std::get<double>(after_or_error));
  json::array lines;
  for (const log_entry* e : obs->logs().find(app, call_id, after, 10'000)) lines.push_back(log_json(*e));
  conn->respond(json_response(http::status::ok, json::object{{"logs", std::move(lines)}}));
}

void server::state::stream_events(const std::shared_ptr<http_connection>& conn, const std::string& app,
                                  const std::string& call_id) {
  const bool finished = !call_id.empty() && obs->history().find(call_id) && !live_call(call_id);
  if (!call_id.empty() && !finished && !live_call(call_id)) {
    return conn->respond(json_error(http::status::not_found, "unknown_call",
                                    "no call " + call_id + " among the server's live and recent calls", call_id));
  }
  conn->begin_events();
  // What the call has written so far, then live lines, progress and its end.
  for (const log_entry* e : obs->logs().find(app, call_id, 0, 10'000)) {
    conn->send_event("log", json::serialize(log_json(*e)));
  }
  if (finished) {
    conn->send_event("status", json::serialize(call_json(*obs->history().find(call_id))));
    return conn->end_events();
  }
  std::weak_ptr<http_connection> weak = conn;
  const std::uint64_t id =
      obs->subscribe({app, call_id, session_id{}, [this, weak, call_id](const server_event& event) {
                        auto c = weak.lock();
                        if (!c || !c->open()) return;
                        if (event.what == server_event::kind::log) {
                          c->send_event("log", json::serialize(log_json(*event.log)));
                        } else if (event.what == server_event::kind::progress) {
                          c->send_event("progress", json::serialize(progress_json(*event.call)));
                        } else if (!call_id.empty()) {
                          call_summary s;
                          if (const call_summary* h = obs->history().find(call_id)) s = *h;
                          c->send_event("status", json::serialize(call_json(s)));
                          c->end_events();
                        }
                      }});
  conn->on_close([this, id] { obs->unsubscribe(id); });
}

void server::state::cancel_call(const std::shared_ptr<http_connection>& conn, const std::string& call_id) {
  if (call_record* in = live_call(call_id); in && !in->durable) {
    cancel_input(*in);
    return conn->respond(json_response(http::status::ok, json::object{{"call_id", call_id}, {"cancelled", true}}));
  }
  control->cancel_spawned(
      call_id, {.to = [conn, call_id](status code, std::span<const char> payload) {
        if (code != status::ok) return conn->respond(error_response(code, payload, call_id));
        conn->respond(json_response(http::status::ok, json::object{{"call_id", call_id}, {"cancelled", true}}));
      }});
}

void server::state::run_function(const http_request& req, const std::shared_ptr<http_connection>& conn,
                                 const app_instance& app, const std::string& function, bool wait,
                                 const target_query& t) {
  auto fn = app.functions.find(function);
  if (fn == app.functions.end()) {
    return conn->respond(json_error(
        http::status::not_found, "unknown_function",
        "app '" + app.name + "' has no function '" + function + "' (it has: " + join_names(app.functions) + ")"));
  }
  if (!app.deployed()) {
    return conn->respond(json_error(http::status::conflict, "not_deployed",
                                    "app '" + app.name +
                                        "' runs from a program, not a deployment: deploy it with "
                                        "`ferry deploy` to call it over HTTP"));
  }
  // The arguments: a JSON array, checked against the signature so that a wrong type is a 400 naming it.
  json::value arguments;
  boost::system::error_code ec;
  arguments = json::parse(req.body().empty() ? std::string_view("[]") : std::string_view(req.body()), ec);
  if (ec || !arguments.is_array()) {
    return conn->respond(json_error(http::status::bad_request, "bad_arguments",
                                    "the body must be a JSON array of the arguments of '" + function + "' " +
                                        fn->second.signature + (ec ? ": " + ec.message() : "")));
  }
  if (auto problem = codec_json::check_arguments(function, fn->second.signature, arguments.as_array());
      !problem.empty()) {
    return conn->respond(json_error(http::status::bad_request, "bad_arguments", problem));
  }
  const auto timeout_or_error = t.number("timeout", 30, 0, 3600, /*whole=*/false);
  if (const auto* error = std::get_if<std::string>(&timeout_or_error)) {
    return conn->respond(json_error(http::status::bad_request, "bad_arguments", *error + " (seconds)"));
  }
  const auto timeout_ms = static_cast<std::uint32_t>(std::get<double>(timeout_or_error) * 1000);
  std::string key;
  if (auto header = req.find("Idempotency-Key"); header != req.end()) key = std::string(header->value());
  detail::buffer encoded;
  codec_json::to_msgpack(arguments, encoded);
  const auto failed = [conn](status code, std::span<const char> error) { conn->respond(error_response(code, error)); };
  function_state* target = control->deployed_function({.to = failed}, app.name + "." + function);
  if (!target) return;
  // Spawned, so that a call that outlives the wait can be polled by its id.
  control->spawn(
      *target, key, encoded.view(), {.to = [this, conn, wait, timeout_ms](status code, std::span<const char> answer) {
        if (code != status::ok) return conn->respond(error_response(code, answer));
        detail::reader r{answer};
        const auto call_id = ferry::decode<std::string>(r);
        if (!wait) {
          return conn->respond(json_response(http::status::accepted, json::object{{"call_id", call_id}}));
        }
        control->get_call(
            call_id, timeout_ms, {.to = [conn, call_id](status outcome, std::span<const char> result) {
              if (outcome == status::running) {
                return conn->respond(
                    json_response(http::status::accepted, json::object{{"call_id", call_id}, {"status", "running"}}));
              }
              if (outcome != status::ok) return conn->respond(error_response(outcome, result, call_id));
              detail::reader value{result};
              conn->respond(json_response(
                  http::status::ok,
                  json::object{{"call_id", call_id}, {"status", "succeeded"}, {"result", codec_json::to_json(value)}}));
            }});
      }});
}

http_response server::state::metrics_response() const {
  std::string extra;
  extra += "# HELP ferry_queue_depth Inputs waiting for a container.\n# TYPE ferry_queue_depth gauge\n";
  auto queue_lines = [&](const app_instance& app) {
    for (const auto& [name, fn] : app.functions) {
      extra += "ferry_queue_depth{app=\"" + label_value(app.name) + "\",function=\"" + label_value(name) + "\"} " +
               std::to_string(fn.queue.size()) + "\n";
    }
  };
  for (const auto& [name, app] : control->deployed()) queue_lines(*app);
  for (const auto& [owner, app] : apps) queue_lines(*app);
  std::size_t by_state[3] = {};
  std::size_t running = 0;
  for (const auto& [id, c] : sched->containers()) {
    ++by_state[static_cast<int>(c->state)];
    running += c->running_inputs();
  }
  extra += "# HELP ferry_containers Containers, by state.\n# TYPE ferry_containers gauge\n";
  for (int s = 0; s < 3; ++s) {
    extra += std::string("ferry_containers{state=\"") + container_state_names[s] + "\"} " +
             std::to_string(by_state[s]) + "\n";
  }
  extra += "# HELP ferry_inputs_running Inputs running in containers.\n# TYPE ferry_inputs_running gauge\n";
  extra += "ferry_inputs_running " + std::to_string(running) + "\n";
  std::size_t waiting = 0;
  for (const auto& [id, in] : graph.calls()) waiting += in->state == call_state::waiting;
  extra +=
      "# HELP ferry_calls_waiting Calls waiting for the calls that produce their arguments.\n"
      "# TYPE ferry_calls_waiting gauge\n";
  extra += "ferry_calls_waiting " + std::to_string(waiting) + "\n";
  extra +=
      "# HELP ferry_connections Open wire connections (programs and containers).\n# TYPE ferry_connections gauge\n";
  extra += "ferry_connections " + std::to_string(sessions.size()) + "\n";
  extra +=
      "# HELP ferry_server_resident_memory_bytes The server process's resident memory.\n"
      "# TYPE ferry_server_resident_memory_bytes gauge\n";
  extra += "ferry_server_resident_memory_bytes " + std::to_string(resident_bytes()) + "\n";
  http_response response{http::status::ok, 11};
  response.set(http::field::content_type, "text/plain; version=0.0.4");
  response.body() = obs->metrics().render(extra);
  return response;
}

}  // namespace ferry::server
