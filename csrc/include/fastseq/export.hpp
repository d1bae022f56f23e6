// FASTSEQ_API marks what libfastseq.so exports; everything else is hidden
// (the library is built with -fvisibility=hidden).
#pragma once

#if defined(FASTSEQ_BUILDING_LIBRARY)
#define FASTSEQ_API __attribute__((visibility("default")))
#else
#define FASTSEQ_API
#endif
