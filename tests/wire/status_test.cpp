// The status table is the one place that says what each status means; the documents that repeat it for
// users (docs/http-api.md's table of codes) must agree with it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ferry/detail/control_verb.hpp>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "client/client.hpp"
#include "doc_text.hpp"
#include "wire/protocol.hpp"

namespace ferry::wire {
namespace {

using doc_text::doc_section;
using doc_text::matches;
using doc_text::read_file;

TEST(status, docs_http_api_lists_every_error_status_with_the_tables_http_code) {
  const std::string doc = read_file(std::string(FERRY_SOURCE_DIR) + "/docs/http-api.md");
  ASSERT_FALSE(doc.empty());
  std::map<std::string, unsigned> documented;  // | `code` | 404 | when |
  for (const auto& m : matches(doc, std::regex(R"(\n\| `([a-z_]+)` \| (\d{3}) \|)"))) {
    documented[m[1]] = static_cast<unsigned>(std::stoul(m[2]));
  }
  for (const status_row& row : status_table) {
    // ok is a value, running a 202 reply, tail_call never leaves the server: none is an error's code.
    if (row.code == status::ok || row.code == status::running || row.code == status::tail_call) continue;
    auto it = documented.find(row.name);
    if (it == documented.end()) {
      ADD_FAILURE() << "docs/http-api.md's table of codes has no row for `" << row.name << "` (" << row.http << ")";
    } else {
      EXPECT_EQ(it->second, row.http) << "docs/http-api.md gives `" << row.name << "` another HTTP status";
    }
  }
}

TEST(status, docs_protocol_lists_every_status_by_its_number_and_name) {
  const std::string doc = doc_section("protocol.md", "## 6. Status codes", "When a status is not 0");
  std::map<unsigned, std::string> documented;  // | 5 | `container_crashed` | meaning | produced by |
  for (const auto& m : matches(doc, std::regex(R"(\n\| (\d+) \| `([a-z_]+)` +\|)"))) {
    documented[static_cast<unsigned>(std::stoul(m[1]))] = m[2];
  }
  for (const status_row& row : status_table) {
    EXPECT_EQ(documented[static_cast<unsigned>(row.code)], row.name)
        << "docs/protocol.md's status " << static_cast<unsigned>(row.code);
  }
  EXPECT_EQ(documented.size(), std::size(status_table)) << "docs/protocol.md lists a status the table does not have";
}

TEST(status, docs_protocol_lists_every_control_verb_and_no_other) {
  const std::string doc =
      doc_section("protocol.md", "Control requests (`request` / `reply`), by verb:", "A `request` with another verb");
  std::set<std::string> documented;  // | `spawn` | `APP.FN` | ...
  for (const auto& m : matches(doc, std::regex(R"(\n\| `([a-z_]+)` \|)"))) documented.insert(m[1]);
  std::set<std::string> verbs;
  for (std::string_view verb : detail::control_verb_names) {
    verbs.emplace(verb);
    EXPECT_EQ(detail::name(*detail::parse_control_verb(verb)), verb);
  }
  EXPECT_EQ(documented, verbs);
  EXPECT_FALSE(detail::parse_control_verb("frobnicate"));
}

TEST(status, each_error_status_reaches_a_caller_as_its_documented_exception) {
  const std::map<status, std::string> expected = {
      {status::bad_arguments, typeid(ArgumentError).name()},
      {status::unknown_function, typeid(UnknownFunctionError).name()},
      {status::unknown_app, typeid(UnknownFunctionError).name()},
      {status::container_crashed, typeid(ContainerCrashedError).name()},
      {status::container_start_failed, typeid(ContainerStartError).name()},
      {status::payload_too_large, typeid(PayloadTooLargeError).name()},
      {status::server_shutdown, typeid(ConnectionError).name()},
      {status::internal, typeid(Error).name()},
      {status::cancelled, typeid(CancelledError).name()},
      {status::timed_out, typeid(TimeoutError).name()},
      {status::resource_exhausted, typeid(ResourceExhaustedError).name()},
      {status::running, typeid(NotFinishedError).name()},
      {status::expired, typeid(ResultExpiredError).name()},
      {status::unknown_call, typeid(UnknownCallError).name()},
      {status::signature_mismatch, typeid(SignatureMismatchError).name()},
      {status::remote_exception, typeid(RemoteError).name()},
  };
  for (const auto& [code, type] : expected) {
    try {
      client::throw_call_error(code, {code, "SomeUnregisteredType", "what happened", "f", "fc-1", ""});
      ADD_FAILURE() << to_string(code) << " threw nothing";
    } catch (const Error& e) {
      EXPECT_EQ(typeid(e).name(), type) << to_string(code);
      EXPECT_THAT(e.what(), ::testing::HasSubstr("what happened")) << to_string(code);
    }
  }
  EXPECT_THROW(client::throw_call_error(static_cast<status>(200), {}), Error) << "a status from a newer peer";
}

TEST(status, names_are_unique_and_read_back) {
  std::map<std::string, status> seen;
  for (const status_row& row : status_table) {
    EXPECT_TRUE(seen.emplace(row.name, row.code).second) << row.name << " twice";
    EXPECT_STREQ(to_string(row.code), row.name);
  }
  EXPECT_STREQ(to_string(static_cast<status>(last_status + 1)), "unknown");
}

}  // namespace
}  // namespace ferry::wire
