// Include this instead of <immintrin.h> / <arm_neon.h>: the intrinsics of the architecture
// being built for. GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their own
// _mm*_undefined_*() helpers (GCC bug 105593), so that warning is off in the files that use
// intrinsics; everything else keeps it.
#pragma once
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif
