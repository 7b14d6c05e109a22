// Argument and environment vectors for exec and posix_spawn.
#pragma once

#include <string>
#include <vector>

namespace ferry {

/// `strings` as the null-terminated array of pointers exec and posix_spawn take; it points into `strings`,
/// which must outlive it.
inline std::vector<char*> exec_array(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace ferry
