// Observing the server: containers' output as log lines attributed to calls (streamed to the calling
// program, kept in the log book, followed live), progress reports, the history of ended calls and their
// metrics. The HTTP API (http_api.cpp) and `ferry logs` read what is kept here.
#include <spdlog/spdlog.h>

#include <charconv>

#include "server/server_state.hpp"

namespace ferry::server {

namespace {
constexpr std::size_t max_line_length = 64 * 1024;  // a longer line is cut into pieces of this size
}

void server::state::output(container_record& c, int stream, std::string_view chunk) {
  std::string& partial = c.partial_line[stream - 1];
  const auto kind = static_cast<wire::log_stream>(stream);
  while (!chunk.empty()) {
    const auto newline = chunk.find('\n');
    if (newline == std::string_view::npos) {
      partial.append(chunk);
      if (partial.size() >= max_line_length) {
        add_log_line(c, kind, partial);
        partial.clear();
      }
      return;
    }
    if (partial.empty()) {
      add_log_line(c, kind, chunk.substr(0, newline));
    } else {
      partial.append(chunk.substr(0, newline));
      add_log_line(c, kind, partial);
      partial.clear();
    }
    chunk.remove_prefix(newline + 1);
  }
}

void server::state::exiting(container_record& c) {
  for (int stream = 0; stream < 2; ++stream) {  // a last line without its newline
    if (!c.partial_line[stream].empty()) {
      add_log_line(c, static_cast<wire::log_stream>(stream + 1), c.partial_line[stream]);
    }
  }
}

void server::state::add_log_line(container_record& c, wire::log_stream stream, std::string_view line) {
  // A line a body wrote through the standard streams names its input; any other goes to the input
  // running, when there is just one.
  const call_record* in = nullptr;
  if (line.size() > 2 && line.front() == wire::log_tag) {
    const auto close = line.find(wire::log_tag, 1);
    std::uint64_t attempt = 0;
    if (close != std::string_view::npos &&
        std::from_chars(line.data() + 1, line.data() + close, attempt).ec == std::errc{}) {
      if (auto a = c.in_flight.find(attempt); a != c.in_flight.end()) in = a->second;
      line.remove_prefix(close + 1);
    }
  } else if (c.in_flight.size() == 1) {
    in = c.in_flight.begin()->second;
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  log_entry entry;
  entry.time = unix_now();
  entry.app = c.function->app->name;
  entry.function = c.function->name;
  if (in) entry.call_id = in->call_id;
  entry.container_id = c.id;
  entry.stream = stream;
  entry.text = line;
  if (stream == wire::log_stream::stderr_stream) {
    c.recent_stderr.emplace_back(entry.call_id, std::string(line.substr(0, 1024)));
    if (c.recent_stderr.size() > container_record::recent_stderr_lines) c.recent_stderr.pop_front();
  }
  const log_entry& kept = logs->add(std::move(entry));
  session* recipient = nullptr;
  if (in) {
    recipient = log_recipient(*in);
  } else if (auto owner = sessions.find(c.function->app->owner_session); owner != sessions.end()) {
    recipient = owner->second.get();  // a line of no call: the program whose app it is sees it
  }
  if (recipient) recipient->connection->send(message_kind::log, kept.row());
  if (!subscribers.empty()) publish({server_event::kind::log, kept.app, kept.call_id, &kept, in});
}

session* server::state::log_recipient(const call_record& in) {
  // Up the calls' parents to the one a program made; the app's own program when its container made it.
  const call_record* root = &in;
  for (int depth = 0; root->parent_input != 0 && depth < 64; ++depth) {
    const call_record* parent = graph.find(root->parent_input);
    if (!parent) break;
    root = parent;
  }
  std::uint64_t session_id = root->caller_session;
  auto it = sessions.find(session_id);
  if (it == sessions.end() || it->second->role != session_role::client) {
    session_id = in.function->app->owner_session;
    it = sessions.find(session_id);
  }
  return it == sessions.end() || it->second->role != session_role::client ? nullptr : it->second.get();
}

void server::state::on_progress(session& s, const wire::frame& f) {
  auto [attempt, done, total, message] = f.decode_header<wire::progress_header>();
  if (!s.container) return;
  auto it = s.container->in_flight.find(attempt);
  if (it == s.container->in_flight.end() || !it->second) return;  // ended meanwhile
  call_record& in = *it->second;
  if (!in.progress) in.progress = std::make_unique<progress_record>();
  in.progress->done = done;
  in.progress->total = total;
  in.progress->message = std::move(message);
  if (!subscribers.empty()) publish({server_event::kind::progress, in.function->app->name, in.call_id, nullptr, &in});
}

void server::state::follow_logs(session& s, const control_answer& answer, const std::string& app,
                                std::span<const char> payload) {
  std::string call_id;
  bool follow = false;
  try {
    detail::reader r{payload};
    std::tie(call_id, follow) = ferry::decode<std::tuple<std::string, bool>>(r);
  } catch (const DecodeError& e) {
    return reply_error(answer,
                       {status::bad_arguments, "", std::string("malformed logs request: ") + e.what(), "", "", ""});
  }
  std::vector<wire::log_row> rows;
  for (const log_entry* e : logs->find(app, call_id, 0, SIZE_MAX)) rows.push_back(e->row());
  reply(answer, status::ok, [&](detail::buffer& out) { codec<std::vector<wire::log_row>>::encode(out, rows); });
  if (!follow) return;
  subscribe({app, call_id, s.id, [this, session_id = s.id](const server_event& event) {
               if (event.what != server_event::kind::log) return;
               auto it = sessions.find(session_id);
               if (it != sessions.end()) it->second->connection->send(message_kind::log, event.log->row());
             }});
}

void server::state::warn_repeating(const std::string& key, const std::string& message, const std::string& repeated) {
  repeating_warning& w = repeating_warnings[key];
  if (w.window) {
    ++w.held;
    w.repeated = repeated;
    return;
  }
  spdlog::warn("{}", message);
  w.window = std::make_unique<asio::steady_timer>(io);
  open_warning_window(key);
}

void server::state::open_warning_window(const std::string& key) {
  repeating_warning& w = repeating_warnings.at(key);
  w.window->expires_after(std::chrono::seconds(5));
  w.window->async_wait([this, key](boost::system::error_code ec) {
    if (ec) return;
    auto it = repeating_warnings.find(key);
    if (it == repeating_warnings.end()) return;
    if (it->second.held == 0) {  // quiet for a whole window: the next one is logged at once again
      repeating_warnings.erase(it);
      return;
    }
    spdlog::warn("{} more {} in the last 5 s", it->second.held, it->second.repeated);
    it->second.held = 0;
    open_warning_window(key);
  });
}

void server::state::flush_repeating_warnings() {
  for (auto& [key, w] : repeating_warnings) {
    if (w.held > 0) spdlog::warn("{} more {}", w.held, w.repeated);
  }
  repeating_warnings.clear();
}

std::uint64_t server::state::subscribe(subscriber sub) {
  const std::uint64_t id = next_subscriber_id++;
  subscribers.emplace(id, std::move(sub));
  return id;
}

void server::state::publish(const server_event& event) {
  // A delivery may unsubscribe (an HTTP stream that has ended): iterate over the ids.
  std::vector<std::uint64_t> ids;
  for (const auto& [id, sub] : subscribers) {
    if ((sub.app.empty() || sub.app == event.app) && (sub.call_id.empty() || sub.call_id == event.call_id)) {
      ids.push_back(id);
    }
  }
  for (std::uint64_t id : ids) {
    auto it = subscribers.find(id);
    if (it != subscribers.end()) it->second.deliver(event);
  }
}

void server::state::summarize(const call_record& in, call_summary& out) const {
  out.call_id = in.call_id;
  out.app = in.function->app->name;
  out.function = in.function->name;
  static constexpr const char* live_states[] = {"waiting", "queued", "running", "queued"};
  if (in.state == call_state::running && in.cancelled) {
    out.state = "cancelling";  // asked to stop; its body has not stopped yet
  } else if (in.state != call_state::done) {
    out.state = live_states[static_cast<int>(in.state)];
  } else if (in.outcome == status::ok) {
    out.state = "succeeded";
  } else if (in.outcome == status::cancelled) {
    out.state = "cancelled";
  } else {
    out.state = "failed";
  }
  out.created_at = in.created_at;
  out.ended_at = 0;
  out.attempts = in.attempts;
  out.container_id = in.container_id;
  out.outcome = in.outcome;
  out.error_type.clear();
  out.error_message.clear();
  if (in.state == call_state::done && in.outcome != status::ok) {
    try {
      wire::error_record error = wire::decode_error(in.result.view());
      out.error_type = std::move(error.type);
      out.error_message = std::move(error.message);
    } catch (const std::exception&) {
      out.error_message = wire::to_string(in.outcome);
    }
  }
  out.parent = in.parent_call_id;
  out.arguments_from = in.arguments_from;
  out.tail_call.clear();
  out.has_progress = in.progress != nullptr;
  if (in.progress) {
    out.progress_done = in.progress->done;
    out.progress_total = in.progress->total;
    out.progress_message = in.progress->message;
  }
}

void server::state::record_end(const call_record& in, const std::string& tail_call_id) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - in.created).count();
  call_summary& slot = history.next_slot();
  summarize(in, slot);
  slot.ended_at = unix_now();
  if (!tail_call_id.empty()) {
    slot.state = "tail_called";
    slot.tail_call = tail_call_id;
  } else if (in.function->metrics) {
    in.function->metrics->count(in.outcome, seconds);
  }
  if (!subscribers.empty()) {
    publish({server_event::kind::ended, slot.app, slot.call_id, nullptr, &in});
  }
}

}  // namespace ferry::server
