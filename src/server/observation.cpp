#include "server/observation.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

#include "server/state_store.hpp"

namespace ferry::server {

using wire::status;

observation::observation(host& h, clock& time, std::size_t max_log_lines)
    : host_(h), clock_(time), logs_(max_log_lines) {}

void observation::output(container_record& c, int stream, std::string_view chunk) {
  std::string& partial = c.partial_line[stream - 1];
  const auto kind = static_cast<wire::log_stream>(stream);
  // Emits `partial` + `text` as a line (without copying when nothing is pending).
  auto emit = [&](std::string_view text) {
    if (partial.empty()) return add_line(c, kind, text);
    partial.append(text);
    add_line(c, kind, partial);
    partial.clear();
  };
  while (!chunk.empty()) {
    const auto newline = chunk.find('\n');
    std::string_view text = chunk.substr(0, newline);
    // A line longer than the limit goes in pieces of the limit (a line of exactly the limit stays whole).
    while (partial.size() + text.size() > max_line_length) {
      const std::size_t take = max_line_length - partial.size();
      emit(text.substr(0, take));
      text.remove_prefix(take);
    }
    if (newline == std::string_view::npos) {
      partial.append(text);
      return;
    }
    emit(text);
    chunk.remove_prefix(newline + 1);
  }
}

void observation::exiting(container_record& c) {
  for (int stream = 0; stream < 2; ++stream) {  // a last line without its newline
    if (!c.partial_line[stream].empty()) {
      add_line(c, static_cast<wire::log_stream>(stream + 1), c.partial_line[stream]);
    }
  }
}

void observation::add_line(container_record& c, wire::log_stream stream, std::string_view line) {
  // A line a body wrote through the standard streams names its input; any other goes to the input
  // running, when there is just one.
  const call_record* in = nullptr;
  const std::string* ended_call = nullptr;  // the call of a tagged line whose attempt has ended
  if (line.size() > 2 && line.front() == wire::log_tag) {
    const auto close = line.find(wire::log_tag, 1);
    std::uint64_t attempt = 0;
    if (close != std::string_view::npos &&
        std::from_chars(line.data() + 1, line.data() + close, attempt).ec == std::errc{}) {
      if (auto a = c.in_flight.find(attempt_id{attempt}); a != c.in_flight.end()) in = a->second;
      if (!in) ended_call = c.ended_call(attempt_id{attempt});
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
  if (ended_call) entry.call_id = *ended_call;
  entry.container_id = number(c.id);
  entry.stream = stream;
  entry.text = line;
  if (stream == wire::log_stream::stderr_stream) {
    c.recent_stderr.emplace_back(entry.call_id, std::string(line.substr(0, 1024)));
    if (c.recent_stderr.size() > container_record::recent_stderr_lines) c.recent_stderr.pop_front();
  }
  const log_entry& kept = logs_.add(std::move(entry));
  host_.show(in, *c.function->app, kept);
  if (!subscribers_.empty()) publish({server_event::kind::log, kept.app, kept.call_id, &kept, in});
}

void observation::progress(call_record& call, double done, double total, std::string message) {
  if (!call.progress) call.progress = std::make_unique<progress_record>();
  call.progress->done = done;
  call.progress->total = total;
  call.progress->message = std::move(message);
  if (!subscribers_.empty()) {
    publish({server_event::kind::progress, call.function->app->name, call.call_id, nullptr, &call});
  }
}

void observation::warn_repeating(const std::string& key, const std::string& message, const std::string& repeated) {
  repeating_warning& w = repeating_warnings_[key];
  if (w.window) {
    ++w.held;
    w.repeated = repeated;
    return;
  }
  spdlog::warn("{}", message);
  open_warning_window(key);
}

void observation::open_warning_window(const std::string& key) {
  repeating_warnings_.at(key).window = clock_.after(warning_window, [this, key] {
    auto it = repeating_warnings_.find(key);
    if (it == repeating_warnings_.end()) return;
    if (it->second.held == 0) {  // quiet for a whole window: the next one is logged at once again
      repeating_warnings_.erase(it);
      return;
    }
    spdlog::warn("{} more {} in the last 5 s", it->second.held, it->second.repeated);
    it->second.held = 0;
    open_warning_window(key);
  });
}

void observation::flush_repeating_warnings() {
  for (auto& [key, w] : repeating_warnings_) {
    if (w.held > 0) spdlog::warn("{} more {}", w.held, w.repeated);
  }
  repeating_warnings_.clear();
}

std::uint64_t observation::subscribe(subscriber sub) {
  const std::uint64_t id = next_subscriber_id_++;
  subscribers_.emplace(id, std::move(sub));
  return id;
}

void observation::unsubscribe_session(session_id id) {
  std::erase_if(subscribers_, [id](const auto& entry) { return entry.second.session_id == id; });
}

void observation::publish(const server_event& event) {
  // A delivery may unsubscribe (an HTTP stream that has ended): iterate over the ids.
  std::vector<std::uint64_t> ids;
  for (const auto& [id, sub] : subscribers_) {
    if ((sub.app.empty() || sub.app == event.app) && (sub.call_id.empty() || sub.call_id == event.call_id)) {
      ids.push_back(id);
    }
  }
  for (std::uint64_t id : ids) {
    auto it = subscribers_.find(id);
    if (it != subscribers_.end()) it->second.deliver(event);
  }
}

void summarize(const call_record& in, call_summary& out) {
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
  out.tail_hops = in.tail_hops;
  out.container_id = number(in.last_container);
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

void observation::record_end(const call_record& in, const std::string& tail_call_id) {
  const double seconds = std::chrono::duration<double>(clock_.now() - in.created).count();
  call_summary& slot = history_.next_slot();
  summarize(in, slot);
  slot.ended_at = unix_now();
  if (!tail_call_id.empty()) {
    slot.state = "tail_called";
    slot.tail_call = tail_call_id;
  } else if (in.function->metrics) {
    in.function->metrics->count(in.outcome, seconds);
  }
  if (!subscribers_.empty()) {
    publish({server_event::kind::ended, slot.app, slot.call_id, nullptr, &in});
  }
}

}  // namespace ferry::server
