# The web dashboard's static files, embedded into the server at build time: include() this from the
# directory that builds the ferry library and add ${FERRY_DASHBOARD_SOURCES} to its sources. Editing
# any of the files regenerates the source (and so rebuilds the server).
cmake_path(ABSOLUTE_PATH CMAKE_CURRENT_LIST_DIR NORMALIZE OUTPUT_VARIABLE _ferry_cmake_dir)
cmake_path(APPEND _ferry_cmake_dir .. src server dashboard OUTPUT_VARIABLE FERRY_DASHBOARD_DIR)
cmake_path(NORMAL_PATH FERRY_DASHBOARD_DIR)
set(FERRY_DASHBOARD_FILES
  ${FERRY_DASHBOARD_DIR}/index.html
  ${FERRY_DASHBOARD_DIR}/app.js
  ${FERRY_DASHBOARD_DIR}/style.css)
set(FERRY_DASHBOARD_SOURCES ${CMAKE_CURRENT_BINARY_DIR}/dashboard_assets.cpp)

# URL path=file pairs; index.html is the page at "/", the rest under /assets/.
add_custom_command(
  OUTPUT ${FERRY_DASHBOARD_SOURCES}
  COMMAND ${CMAKE_COMMAND} -DOUTPUT=${FERRY_DASHBOARD_SOURCES}
          "-DASSETS=/=${FERRY_DASHBOARD_DIR}/index.html|/assets/app.js=${FERRY_DASHBOARD_DIR}/app.js|/assets/style.css=${FERRY_DASHBOARD_DIR}/style.css"
          -P ${_ferry_cmake_dir}/embed_assets.cmake
  DEPENDS ${FERRY_DASHBOARD_FILES} ${_ferry_cmake_dir}/embed_assets.cmake
  COMMENT "Embedding the dashboard (src/server/dashboard/) into the server"
  VERBATIM)
