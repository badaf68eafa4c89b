# rp_role(ROLE BINARY LIBS...): the role's modules become the static library
# rp_ROLE (so unit tests can link them) and main.c becomes BINARY.
function(rp_role role binary)
	if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
		return()
	endif()
	file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
	list(REMOVE_ITEM srcs ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
	add_library(rp_${role} STATIC ${srcs})
	target_include_directories(rp_${role} PUBLIC
		${CMAKE_CURRENT_SOURCE_DIR})
	target_link_libraries(rp_${role} PUBLIC rp_proto rp_common ${ARGN})
	add_executable(${binary} main.c)
	target_link_libraries(${binary} PRIVATE rp_${role})
	set_target_properties(${binary} PROPERTIES
		RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
	install(TARGETS ${binary} RUNTIME DESTINATION bin)
endfunction()
