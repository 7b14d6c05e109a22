// The server's numbers for what it tracks. Each is a type of its own, so that one cannot be passed where
// another is wanted (a container's id for a call's, a session's for an attempt's); number() gives the integer
// that the wire, the logs and the listings carry, and std::hash keys maps by them.
//
// A call has three numbers, in three namespaces: its graph id (the server's key for it, below); its call id,
// the "fc-" string users see (format_call_id, made from the graph id); and its caller's own number for it,
// the call_id of the caller's call_header, unique only within the caller's session.
#pragma once

#include <fmt/format.h>

#include <concepts>
#include <cstdint>

namespace ferry::server {

/// A call in the call graph: call_record::id, 1, 2, ... per server start.
enum class graph_id : std::uint64_t {};
/// An attempt of a call, as the scheduler numbers them: the attempt_id of the wire's input, output,
/// cancel_input and progress messages.
enum class attempt_id : std::uint64_t {};
/// A container the scheduler started: container_record::id, also given to the container at its start.
enum class container_id : std::uint64_t {};
/// A connection: a program, a container or a CLI command; {} for none (the HTTP API's requests).
enum class session_id : std::uint64_t {};

template <class T>
concept id_type = std::same_as<T, graph_id> || std::same_as<T, attempt_id> || std::same_as<T, container_id> ||
    std::same_as<T, session_id>;

template <id_type Id>
constexpr std::uint64_t number(Id id) {
  return static_cast<std::uint64_t>(id);
}

}  // namespace ferry::server

/// Logs and messages print an id as its number.
template <ferry::server::id_type Id>
struct fmt::formatter<Id> : fmt::formatter<std::uint64_t> {
  auto format(Id id, fmt::format_context& ctx) const { return fmt::formatter<std::uint64_t>::format(number(id), ctx); }
};
