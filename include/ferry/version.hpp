/// ferry/version.hpp: the release of ferry a program is built against.
#pragma once

namespace ferry {

/// ferry's version, "MAJOR.MINOR.PATCH".
const char* version() noexcept;

}  // namespace ferry
