# Sanitizer runtime options for build-sanitize/ binaries (sourced by tools/sanitize.sh and tools/fuzz.sh).
# Every option that weakens a check is here with its reason; docs/reliability.md repeats them.
supp="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# protect_shadow_gap=0: libtorch_cuda's CUDA runtime maps memory inside ASan's shadow gap when it is loaded.
# detect_leaks=1: LeakSanitizer on; one-time allocations of uninstrumented libraries are in lsan.supp.
export ASAN_OPTIONS="detect_leaks=1:protect_shadow_gap=0:abort_on_error=1:strict_string_checks=1:${JANUS_ASAN_EXTRA:-}${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="suppressions=$supp/ubsan.supp:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# OPENCV_VIDEOIO_PRIORITY_GPHOTO2=0: opening a video file makes OpenCV's gPhoto2 camera backend autodetect USB
# cameras (gp_camera_autodetect -> gp_port_usb_find_device -> libusb_get_device_list), which leaks ~22 KB in 5000
# objects per call; with ASan's default fast unwinding the stack ends in libusb and a dlclose'd port module, so no
# suppression can name it. gPhoto2 is a camera-capture backend; video files are read by the FFmpeg backend.
export OPENCV_VIDEOIO_PRIORITY_GPHOTO2=0
