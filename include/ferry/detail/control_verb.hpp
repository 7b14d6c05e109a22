// The control requests a program makes of the server, beside calls: listings, deployments, look-ups and
// spawned calls (docs/protocol.md, "Control requests", says what each takes and answers). A request names
// its verb on the wire by its name, so that a server answers a verb it does not know with a clear error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry::detail {

enum class control_verb : std::uint8_t { containers, apps, calls, function, deploy, stop, spawn, get, cancel, logs };

inline constexpr std::string_view control_verb_names[] = {"containers", "apps",  "calls", "function", "deploy",
                                                          "stop",       "spawn", "get",   "cancel",   "logs"};

constexpr std::string_view name(control_verb verb) { return control_verb_names[static_cast<std::size_t>(verb)]; }

/// The verb named `text`, or nullopt for a name no verb has.
constexpr std::optional<control_verb> parse_control_verb(std::string_view text) {
  for (std::size_t i = 0; i < std::size(control_verb_names); ++i) {
    if (control_verb_names[i] == text) return static_cast<control_verb>(i);
  }
  return std::nullopt;
}

}  // namespace ferry::detail
