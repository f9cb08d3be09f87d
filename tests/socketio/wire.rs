// wire tests: to come
