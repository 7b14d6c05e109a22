// What an App holds: its name and the functions it declared, in declaration order.
#pragma once

#include <ferry/detail/function_entry.hpp>
#include <memory>
#include <string>
#include <vector>

namespace ferry::detail {

struct app_state {
  std::string name;
  std::vector<std::shared_ptr<const function_entry>> functions;

  const function_entry* find(const std::string& function) const {
    for (const auto& f : functions) {
      if (f->name == function) return f.get();
    }
    return nullptr;
  }
};

}  // namespace ferry::detail
