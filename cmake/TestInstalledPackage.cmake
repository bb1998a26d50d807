# ctest driver: install the build tree into a scratch prefix, then configure, build and run examples/caption_app
# against it through find_package(janus CONFIG REQUIRED), exactly as a user's project would.
set(work "${JANUS_BUILD}/test_tmp/package")
file(REMOVE_RECURSE "${work}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()
step(${CMAKE_COMMAND} --install "${JANUS_BUILD}" --prefix "${work}/install")
step(${CMAKE_COMMAND} -S "${JANUS_SOURCE}/examples/caption_app" -B "${work}/app" -G "${GENERATOR}"
     -DCMAKE_PREFIX_PATH=${work}/install -DTorch_DIR=${Torch_DIR} -DCMAKE_BUILD_TYPE=Release)
step(${CMAKE_COMMAND} --build "${work}/app" -j 2)
step("${work}/app/caption_app" --self-test)
message(STATUS "caption_app: ${last_output}")
