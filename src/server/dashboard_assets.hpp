// The web dashboard's static files (src/server/dashboard/), embedded into the binary at build time by
// cmake/embed_assets.cmake, so a server serves its dashboard with nothing to install beside it.
#pragma once

#include <string_view>

namespace ferry::server {

struct dashboard_asset {
  std::string_view path;          ///< URL path: "/", "/assets/app.js", ...
  std::string_view content_type;  ///< e.g. "text/html; charset=utf-8"
  std::string_view body;          ///< the file's bytes
};

/// The dashboard file served at `path` ("/" is index.html), or nullptr.
const dashboard_asset* find_dashboard_asset(std::string_view path) noexcept;

}  // namespace ferry::server
