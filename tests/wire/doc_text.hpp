// Reading ferry's documents in tests that check them against the code (docs/*.md).
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::wire::doc_text {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The part of docs/`name` from the line starting `from` to the one starting `to`; fails the test when absent.
inline std::string doc_section(const std::string& name, const std::string& from, const std::string& to) {
  const std::string whole = read_file(std::string(FERRY_SOURCE_DIR) + "/docs/" + name);
  const std::size_t begin = whole.find(from);
  const std::size_t end = whole.find(to, begin);
  if (begin == std::string::npos || end == std::string::npos) {
    ADD_FAILURE() << "docs/" << name << " has no part from '" << from << "' to '" << to << "'";
    return "";
  }
  return whole.substr(begin, end - begin);
}

/// Each match of `pattern` in `text`, as its groups.
inline std::vector<std::smatch> matches(const std::string& text, const std::regex& pattern) {
  return {std::sregex_iterator(text.begin(), text.end(), pattern), std::sregex_iterator()};
}

}  // namespace ferry::wire::doc_text
