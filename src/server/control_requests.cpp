// Control requests on the wire: a `request` frame decoded (see detail::control_verb) into a call of the
// control service (control_service.hpp), whose answer goes back as a `reply` frame.
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
    it->second->connection->send(message_kind::reply, wire::reply_header{answer.request_id, code}, write);
  } catch (const PayloadTooLargeError& e) {
    reply_error(answer, {status::payload_too_large, "", e.what(), "", "", ""});
  }
}

void server::state::reply_error(const control_answer& answer, const wire::error_record& error) {
  reply(answer, error.code, [&](detail::buffer& out) { wire::encode_error(out, error); });
}

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
      const auto rows = control->app_rows();
      return reply(answer, status::ok,
                   [&](detail::buffer& out) { codec<std::vector<wire::app_row>>::encode(out, rows); });
    }
    case control_verb::calls: {
      state_store::call_filter filter;
      try {
        if (!payload.empty()) {
          detail::reader r{payload};
          std::uint32_t limit = 0;
          std::tie(filter.app, filter.function, filter.status, limit) =
              ferry::decode<std::tuple<std::string, std::string, std::string, std::uint32_t>>(r);
          filter.limit = std::clamp<std::size_t>(limit, 1, 100'000);
        }
      } catch (const DecodeError& e) {
        return reply_error(answer, {status::bad_arguments, "", e.what(), "", "", ""});
      }
      return control->list_calls(filter, answer);
    }
    case control_verb::function: {
      function_state* fn = control->deployed_function(answer, subject, s.app);
      if (!fn) return;
      return reply(answer, status::ok, [&](detail::buffer& out) {
        ferry::encode(out, std::tuple<std::string, std::string>{fn->signature, fn->structs});
      });
    }
    case control_verb::deploy: {
      detail::reader r{payload};
      std::vector<wire::function_spec> specs;
      ferry::bytes binary;
      std::string declared_name;
      std::vector<std::string> arguments;
      try {
        std::tie(specs, binary, declared_name, arguments) = ferry::decode<
            std::tuple<std::vector<wire::function_spec>, ferry::bytes, std::string, std::vector<std::string>>>(r);
      } catch (const DecodeError& e) {
        return reply_error(
            answer, {status::bad_arguments, "", std::string("malformed deploy request: ") + e.what(), "", "", ""});
      }
      const std::span<const char> image(reinterpret_cast<const char*>(binary.data()), binary.size());
      return control->deploy(answer, subject, specs, image, declared_name, std::move(arguments));
    }
    case control_verb::stop:
      return control->stop_app(answer, subject);
    case control_verb::spawn: {
      function_state* fn = control->deployed_function(answer, subject, s.app);
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
      return control->spawn(*fn, key, std::span<const char>(arguments, static_cast<std::size_t>(r.pos - arguments)),
                            answer);
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
      return control->get_call(subject, timeout_ms, answer);
    }
    case control_verb::cancel:
      return control->cancel_spawned(subject, answer);
    case control_verb::logs:
      return follow_logs(s, answer, subject, payload);
  }
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
  for (const log_entry* e : obs->logs().find(app, call_id, 0, SIZE_MAX)) rows.push_back(e->row());
  reply(answer, status::ok, [&](detail::buffer& out) { codec<std::vector<wire::log_row>>::encode(out, rows); });
  if (!follow) return;
  obs->subscribe({app, call_id, s.id, [this, session_id = s.id](const server_event& event) {
                    if (event.what != server_event::kind::log) return;
                    auto it = sessions.find(session_id);
                    if (it != sessions.end()) it->second->connection->send(message_kind::log, event.log->row());
                  }});
}

std::vector<wire::container_row> server::state::container_rows() const {
  std::vector<wire::container_row> rows = control->container_rows();
  auto add_waiting = [&rows](const app_instance& app) {
    for (const auto& [name, fn] : app.functions) {
      for (std::size_t i = 0; i < fn.unplaced_containers; ++i) {
        rows.emplace_back(0, app.name, name, "waiting", 0, 0, 0.0, 0, fn.waiting_for);
      }
    }
  };
  for (const auto& [owner, app] : apps) add_waiting(*app);
  for (const auto& [name, app] : control->deployed()) add_waiting(*app);
  return rows;
}

}  // namespace ferry::server
