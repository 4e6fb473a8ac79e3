-- The sample target: customers with PII, and orders an agent may be asked to delete.
create table customers(id int primary key, name text, email text, ssn text, card text);
insert into customers values
  (1, 'Ada Lovelace', 'ada@example.com', '078-05-1120', '4111 1111 1111 1111'),
  (2, 'Alan Turing', 'alan@example.org', '219-09-9999', '5500 0000 0000 0004');
create table orders(id serial primary key, customer_id int references customers, total numeric);
insert into orders(customer_id, total) select 1 + (g % 2), g from generate_series(1, 100) g;
